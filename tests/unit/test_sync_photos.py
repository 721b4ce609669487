"""Photos are made JPEGs under Graph's limit before upload."""

from __future__ import annotations

import io
import random

from PIL import Image

from services.sync.photos import fit_for_graph
from tests.images import image_bytes


def noise_png(side: int) -> bytes:
    rng = random.Random(7)
    image = Image.frombytes(
        "RGB", (side, side), bytes(rng.randrange(256) for _ in range(side * side * 3))
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_png_becomes_a_jpeg() -> None:
    out = fit_for_graph(image_bytes("PNG", (40, 30)), "image/png")
    assert out is not None
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "JPEG" and img.size == (40, 30)


def test_a_photo_over_the_limit_is_scaled_down_under_it() -> None:
    data = noise_png(300)
    limit = 20_000
    assert len(data) > limit
    out = fit_for_graph(data, "image/png", limit=limit)
    assert out is not None and len(out) < limit
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "JPEG" and max(img.size) < 300


def test_a_small_jpeg_is_sent_as_it_is() -> None:
    data = image_bytes("JPEG")
    assert fit_for_graph(data, "image/jpeg") is data


def test_bytes_that_are_no_image_are_refused() -> None:
    assert fit_for_graph(b"x" * 100, "image/png") is None
