"""Photo bytes, stored outside the events in PostgreSQL, by person and keyed content hash."""

from __future__ import annotations

import hashlib
import hmac
import io
import warnings
from dataclasses import dataclass
from uuid import UUID

from PIL import Image
from psycopg_pool import ConnectionPool

from services.contacts.domain import PhotoInfo
from services.contacts.personal_data import PersonCipher

#: Media types accepted, by the format Pillow sniffs from the bytes.
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

#: Images past this many pixels are refused before decoding (decompression bombs).
MAX_PIXELS = 50_000_000


class PhotoError(Exception):
    """Base class of photo input errors."""


class PhotoTooLargeError(PhotoError):
    """The photo is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"photo is {size} bytes; the limit is {limit} bytes")


class UnsupportedPhotoTypeError(PhotoError):
    """The bytes are not a JPEG, PNG or WebP image."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"photo must be a JPEG, PNG or WebP image ({detail})")


class PhotoNotStoredError(PhotoError):
    """No stored bytes for this photo (erased, or never stored)."""


@dataclass(frozen=True)
class StoredPhoto:
    """A photo's bytes and media type."""

    media_type: str
    data: bytes


def sniff(data: bytes) -> tuple[str, int, int]:
    """Media type and pixel size of an image, judged from its bytes alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or "unknown"
                width, height = img.size
                if fmt in MEDIA_TYPES:
                    if width * height > MAX_PIXELS:
                        raise UnsupportedPhotoTypeError(f"{width}x{height} pixels is too many")
                    img.verify()
            if fmt in MEDIA_TYPES:
                # verify() checks structure only (a truncated JPEG passes); decoding every
                # pixel, on a fresh image since verify() leaves it unusable, proves the rest.
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
    except UnsupportedPhotoTypeError:
        raise
    except Exception as exc:  # Pillow raises many types for undecodable input
        raise UnsupportedPhotoTypeError("not a readable image") from exc
    if fmt not in MEDIA_TYPES:
        raise UnsupportedPhotoTypeError(f"found {fmt}")
    return MEDIA_TYPES[fmt], width, height


class PhotoStore:
    """Validates photos and keeps their bytes; subclasses say where."""

    def __init__(self, key_secret: bytes, max_bytes: int) -> None:
        self._key_secret = key_secret
        self.max_bytes = max_bytes

    def delete_person(self, person_id: UUID) -> None:
        """Delete every photo of a person (erasure)."""
        raise NotImplementedError

    def content_hash(self, data: bytes) -> str:
        """A keyed hash of the bytes: identifies the photo without fingerprinting it."""
        return hmac.new(self._key_secret, data, hashlib.sha256).hexdigest()

    def put(self, person_id: UUID, data: bytes) -> PhotoInfo:
        """Validate and store a photo; idempotent for the same bytes."""
        if len(data) > self.max_bytes:
            raise PhotoTooLargeError(len(data), self.max_bytes)
        media_type, width, height = sniff(data)
        digest = self.content_hash(data)
        self._save(person_id, digest, media_type, data)
        return PhotoInfo(
            content_hash=digest,
            media_type=media_type,
            byte_size=len(data),
            width=width,
            height=height,
        )

    def _save(self, person_id: UUID, digest: str, media_type: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, person_id: UUID, content_hash: str) -> StoredPhoto:
        """Fetch a stored photo."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise when the storage does not answer."""

    def close(self) -> None:
        """Release resources."""


class InMemoryPhotoStore(PhotoStore):
    """Photos in a dict: for unit tests."""

    def __init__(self, key_secret: bytes = b"test", max_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(key_secret, max_bytes)
        self.blobs: dict[tuple[UUID, str], StoredPhoto] = {}

    def _save(self, person_id: UUID, digest: str, media_type: str, data: bytes) -> None:
        self.blobs.setdefault((person_id, digest), StoredPhoto(media_type, data))

    def delete_person(self, person_id: UUID) -> None:
        """Delete every photo of a person."""
        for key in [k for k in self.blobs if k[0] == person_id]:
            del self.blobs[key]

    def get(self, person_id: UUID, content_hash: str) -> StoredPhoto:
        """Fetch a stored photo."""
        try:
            return self.blobs[(person_id, content_hash)]
        except KeyError:
            raise PhotoNotStoredError(content_hash) from None


class PostgresPhotoStore(PhotoStore):
    """Photos in the contact_photos table, encrypted under the person's key."""

    def __init__(
        self, pool: ConnectionPool, cipher: PersonCipher, key_secret: bytes, max_bytes: int
    ) -> None:
        super().__init__(key_secret, max_bytes)
        self._pool = pool
        self._cipher = cipher

    @staticmethod
    def _aad(person_id: UUID, digest: str) -> bytes:
        return f"photo:{person_id}:{digest}".encode()

    def delete_person(self, person_id: UUID) -> None:
        """Delete every photo of a person."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM contact_photos WHERE person_id = %s", (person_id,))

    def ping(self) -> None:
        """Raise when PostgreSQL does not answer."""
        with self._pool.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    def _save(self, person_id: UUID, digest: str, media_type: str, data: bytes) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO contact_photos (person_id, content_hash, media_type, data)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    person_id,
                    digest,
                    media_type,
                    self._cipher.encrypt(person_id, data, self._aad(person_id, digest)),
                ),
            )

    def get(self, person_id: UUID, content_hash: str) -> StoredPhoto:
        """Fetch a stored photo."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT media_type, data FROM contact_photos"
                " WHERE person_id = %s AND content_hash = %s",
                (person_id, content_hash),
            ).fetchone()
        if row is None:
            raise PhotoNotStoredError(content_hash)
        data = self._cipher.decrypt(person_id, bytes(row[1]), self._aad(person_id, content_hash))
        if data is None:
            raise PhotoNotStoredError(content_hash)
        return StoredPhoto(row[0], data)
