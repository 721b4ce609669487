"""Waiting out an outage: a step that needs a server is tried again until it answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.retrying import logged, wait_for_stop, wait_out

__all__ = ["until_it_answers", "wait_for_stop"]

T = TypeVar("T")


async def until_it_answers(
    what: str,
    step: Callable[[], Awaitable[T]],
    is_outage: Callable[[BaseException], bool],
    stop: asyncio.Event,
    log: logging.Logger,
) -> T | None:
    """step()'s result once it succeeds; outages are logged and waited out with backoff.

    Any other error is raised (a wrong setting must not look like an outage). None when
    stop was requested before the step succeeded.
    """

    async def attempt() -> T | None:
        task = asyncio.ensure_future(step())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():  # asked to stop while the step still waits for a server
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    return await wait_out(attempt, is_outage, stop, logged(log, f"{what}: a server is unreachable"))
