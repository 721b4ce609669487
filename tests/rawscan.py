"""Scan every table of a database, raw, for values in the encodings the project uses."""

from __future__ import annotations

import base64
import json
from typing import Any

import psycopg


def encodings(value: str) -> set[bytes]:
    """The byte forms a value could take when stored: plain, JSON-escaped, base64."""
    forms = {value.encode(), value.casefold().encode()}
    forms.add(json.dumps(value).strip('"').encode())  # \\u escapes for non-ASCII
    raw = value.encode()
    # Base64 of the value at each of the three alignments inside a longer blob.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = (shift * 4 + 2) // 3 + (1 if shift else 0)
        end = len(encoded) - (4 if (shift + len(raw)) % 3 else 0)
        if end - start >= 6:
            forms.add(encoded[start:end])
    return {f for f in forms if len(f) >= 4}


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


def table_contents(dsn: str) -> dict[str, bytes]:
    """Every base table's rows as one byte string per table (bytea read raw)."""
    contents: dict[str, bytes] = {}
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            contents[f"{schema}.{table}"] = b"\x1e".join(
                b"\x1f".join(_as_bytes(v) for v in row) for row in rows
            )
    return contents


def find(dsn: str, values: list[str]) -> dict[str, list[str]]:
    """Which tables hold any encoding of which value (case-insensitively for text forms)."""
    contents = table_contents(dsn)
    found: dict[str, list[str]] = {}
    for value in values:
        forms = encodings(value)
        for table, data in contents.items():
            lowered = data.lower()
            if any(f in data or f.lower() in lowered for f in forms):
                found.setdefault(value, []).append(table)
    return found
