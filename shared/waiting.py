"""Waiting out an outage: a step that needs a server is tried again until it answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: The longest wait between two tries.
MAX_DELAY_SECONDS = 30.0


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when stop was requested meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


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
    delay = 0.5
    while not stop.is_set():
        attempt = asyncio.ensure_future(step())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not attempt.done():  # asked to stop while the step still waits for a server
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)
            break
        try:
            return attempt.result()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "%s: a server is unreachable (%s: %s); trying again in %.1fs",
                what,
                type(exc).__name__,
                exc,
                delay,
            )
        if await wait_for_stop(stop, delay):
            break
        delay = min(delay * 2, MAX_DELAY_SECONDS)
    return None
