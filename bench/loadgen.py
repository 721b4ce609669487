"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio streams, requests
written as bytes, responses read by status line and Content-Length.

httpx costs the benchmark process about 1 ms of CPU per request; 32 httpx clients in one
process capped a plain ASGI app at about 220 requests/s on 2 cores, so they, not the server,
set B1's figures. This client costs a small fraction of that, so the server under test is
what the figures measure. It speaks only what the benchmarks need: a JSON body out, a
Content-Length or chunked body back (no trailers), no redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ProtocolError(Exception):
    """The server's answer was not the HTTP/1.1 this client reads."""


@dataclass(frozen=True)
class Answer:
    """A response: status and body."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader = reader
        self._writer = writer
        self._host = host

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        """Connect to the server of base_url (http only)."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"not an http:// URL: {base_url}")
        port = parts.port or 80
        reader, writer = await asyncio.open_connection(parts.hostname, port)
        return cls(reader, writer, f"{parts.hostname}:{port}")

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """Send one request (body as JSON when given) and read its answer."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line: {status_line!r}") from None
        length = 0
        chunked = False
        for line in header_lines:
            name, _, value = line.partition(":")
            lowered = name.strip().lower()
            if lowered == "content-length":
                length = int(value)
            elif lowered == "transfer-encoding":
                chunked = "chunked" in value.lower()
        if chunked:
            return Answer(status, await self._chunks())
        return Answer(status, await self._reader.readexactly(length) if length else b"")

    async def _chunks(self) -> bytes:
        """A chunked body (no trailers)."""
        body = bytearray()
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size: {size_line!r}") from None
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return bytes(body)
            body += await self._reader.readexactly(size + 2)
            del body[-2:]

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def back_to_back(
    base_url: str,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    body: Callable[[], Any],
    path: str = "/contacts",
    expected: int = 201,
) -> tuple[list[float], int, float]:
    """`clients` connections POSTing body() back to back for `seconds` after one warm-up
    request each; (latencies in s of the expected answers, other answers, elapsed s)."""
    loop = asyncio.get_running_loop()
    conns = [await Connection.open(base_url) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    try:
        await asyncio.gather(*(c.request("POST", path, body(), headers) for c in conns))
        deadline = loop.time() + seconds

        async def client(conn: Connection) -> None:
            nonlocal errors
            while loop.time() < deadline:
                t0 = loop.time()
                answer = await conn.request("POST", path, body(), headers)
                if answer.status == expected:
                    latencies.append(loop.time() - t0)
                else:
                    errors += 1

        started = loop.time()
        await asyncio.gather(*(client(c) for c in conns))
        elapsed = loop.time() - started
    finally:
        for c in conns:
            await c.close()
    return latencies, errors, elapsed


#: What a failed exchange raises: the connection is then closed and not reused.
EXCHANGE_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)


class Pool:
    """Up to `size` keep-alive connections to one server, shared by concurrent requests."""

    def __init__(self, base_url: str, size: int, headers: dict[str, str] | None = None):
        self._base_url = base_url
        self._headers = headers or {}
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: Any = None) -> Answer:
        """One request on an idle connection (a new one when none is idle)."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else await Connection.open(self._base_url)
            try:
                answer = await conn.request(method, path, body, self._headers)
            except BaseException:
                await conn.close()
                raise
            self._idle.append(conn)
            return answer

    async def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            await self._idle.pop().close()
