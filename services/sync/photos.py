"""Photos for Graph: a JPEG under Graph's 4 MB limit, scaled down as far as needed."""

from __future__ import annotations

import io

from PIL import Image

from services.sync.domain import MAX_PHOTO_BYTES

JPEG = "image/jpeg"
#: Exchange shows contact photos at most 648 px wide: larger ones only cost bytes.
MAX_SIDE = 648
JPEG_QUALITY = 85


def fit_for_graph(data: bytes, media_type: str, limit: int = MAX_PHOTO_BYTES) -> bytes | None:
    """The photo as a JPEG under `limit` bytes, scaled down as needed; None if unreadable."""
    if media_type == JPEG and len(data) < limit:
        return data
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.load()
            image = source.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    side = min(max(image.size), MAX_SIDE)
    while True:
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        if out.tell() < limit:
            return out.getvalue()
        if side <= 16:
            return None
        side = side * 3 // 4
