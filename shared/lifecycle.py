"""How every Kontakt process runs: stopped by SIGTERM or SIGINT, serving HTTP in its event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any, Literal

import uvicorn


def stop_on_signals(on_again: Callable[[], None] | None = None) -> asyncio.Event:
    """An event the first SIGTERM or SIGINT sets; a second SIGINT calls on_again (stop now)."""
    stop = asyncio.Event()

    def handle(sig: signal.Signals) -> None:
        if stop.is_set() and sig == signal.SIGINT and on_again is not None:
            on_again()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle, sig)
    return stop


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's own handlers (stop_on_signals) stop it, and then this server;
        # uvicorn's would re-raise the signal after its shutdown, ending the process
        # killed by it instead of with exit code 0.
        yield


class HttpServer:
    """Serves an ASGI app inside the running event loop (port 0: not at all)."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        lifespan: Literal["on", "off", "auto"] = "off",
        log_level: str = "warning",
    ) -> None:
        self.port = port
        self._server = _Server(
            uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan=lifespan)
        )
        self._task: asyncio.Task[None] | None = None
        self._failed: SystemExit | None = None

    async def start(self) -> None:
        """Start serving in the background (no-op for port 0); a failed start-up ends the
        process, as uvicorn does."""
        if self.port:
            self._task = asyncio.create_task(self._server.serve())

    async def _serve_in_front(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as failed:  # uvicorn's word for a failed start-up
            self._failed = failed

    async def stop(self) -> None:
        """Finish in-flight requests and stop serving."""
        if self._task:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def force(self) -> None:
        """Stop at once, without waiting for in-flight requests."""
        self._server.force_exit = True

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until stop is set or the server ends (a failed start-up raises SystemExit)."""
        if not self.port:
            return
        self._task = asyncio.create_task(self._serve_in_front())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({self._task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        await self.stop()
        if self._failed is not None:
            raise self._failed


async def serve_app(app: Any, host: str, port: int, log_level: str = "info") -> None:
    """Serve an ASGI app with its lifespan until SIGTERM/SIGINT, then return (exit code 0)."""
    server = HttpServer(app, host, port, lifespan="auto", log_level=log_level)
    await server.serve(stop_on_signals(on_again=server.force))
