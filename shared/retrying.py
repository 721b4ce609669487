"""Retry policies, each named and defined once (tenacity underneath).

Two kinds of trouble are told apart everywhere: an outage (a server unreachable or
busy) is waited out for as long as it lasts, with waits doubling up to a cap; a
failure of the work itself (a message the database refuses) is tried a bounded
number of times.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from eventsourcing.persistence import RecordConflictError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
    wait_random_exponential,
)

T = TypeVar("T")

#: The longest wait between two tries during an outage.
MAX_OUTAGE_WAIT_SECONDS = 30.0

#: Called before each wait with the failed attempt's state (for a log line, a counter).
BeforeSleep = Callable[[RetryCallState], Awaitable[None] | None]


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when stop was requested meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def error_of(state: RetryCallState) -> BaseException | None:
    """The error the attempt of this state ended with (None when it succeeded)."""
    return state.outcome.exception() if state.outcome is not None else None


def next_wait(state: RetryCallState) -> float:
    """The wait the policy chose before the next attempt, in seconds."""
    return state.next_action.sleep if state.next_action is not None else 0.0


def logged(log: logging.Logger, what: str) -> BeforeSleep:
    """A hook saying, before each wait, what failed, with which error, and for how long."""

    def say(state: RetryCallState) -> None:
        exc = error_of(state)
        log.warning(
            "%s (%s: %s); trying again in %.1fs", what, type(exc).__name__, exc, next_wait(state)
        )

    return say


def _is_retriable_kafka_answer(exc: BaseException) -> bool:
    # A fresh broker answers GroupCoordinatorNotAvailable (and its kin) for a while;
    # those are marked retriable. Anything else is a real answer.
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def kafka_answers(
    attempts: int = 8, first: float = 0.25, before_sleep: BeforeSleep | None = None
) -> AsyncRetrying:
    """Kafka's retriable answers tried again: `attempts` in all, waits doubling to 2 s."""
    return AsyncRetrying(
        retry=retry_if_exception(_is_retriable_kafka_answer),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first, max=2.0),
        before_sleep=before_sleep,
        reraise=True,
    )


async def wait_out(
    step: Callable[[], Awaitable[T]],
    is_outage: Callable[[BaseException], bool],
    stop: asyncio.Event,
    before_sleep: BeforeSleep | None = None,
    first: float = 0.5,
    cap: float = MAX_OUTAGE_WAIT_SECONDS,
    jitter: float = 0.0,
) -> T | None:
    """step()'s result, outages waited out (waits doubling from `first` to `cap`); None if stopped.

    Any other error is raised at once (a wrong setting must not look like an outage).
    """

    async def attempt() -> T | None:
        return None if stop.is_set() else await step()

    async def sleep(seconds: float) -> None:
        await wait_for_stop(stop, seconds)

    policy = AsyncRetrying(
        retry=retry_if_exception(is_outage),
        stop=lambda _: stop.is_set(),
        # Jitter, so that processes that lost a server together do not return in lockstep.
        wait=wait_exponential(multiplier=first, max=cap) + wait_random(0, jitter),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=lambda _: None,
    )
    return await policy(attempt)


def message_failures(
    attempts: int,
    is_failure: Callable[[BaseException], bool],
    before_sleep: BeforeSleep | None = None,
) -> AsyncRetrying:
    """A message's own failures tried again: `attempts` in all, waits doubling from 0.1 to 2 s."""
    return AsyncRetrying(
        retry=retry_if_exception(is_failure),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        before_sleep=before_sleep,
        reraise=True,
    )


def write_conflicts(attempts: int) -> Retrying:
    """An event-store save that lost a race tried again on fresh state, after a random pause.

    `attempts` in all, each pause up to 2 ms doubled per attempt (at most 0.1 s);
    iterating ends after the last attempt failed (its conflict is not raised).
    """
    return Retrying(
        retry=retry_if_exception_type(RecordConflictError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.002, max=0.1),
        retry_error_callback=lambda _: None,
    )


def doubling_wait(outages_in_a_row: int, first: float, cap: float) -> float:
    """The wait after the n-th outage in a row (0-based): `first` doubled n times, at most `cap`."""
    return min(cap, first * 2**outages_in_a_row)


def jittered_wait(n: int, first: float, cap: float, rng: random.Random) -> float:
    """doubling_wait with jitter: between half of it and all of it, so that retries spread."""
    longest = doubling_wait(n, first, cap)
    return rng.uniform(longest / 2, longest)
