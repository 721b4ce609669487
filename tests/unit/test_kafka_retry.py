"""Retrying Kafka's transient answers: a bounded number of times, only for retriable errors."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

from shared.kafka import retry_kafka


class FailsFirst:
    """A Kafka call that answers an error the first `times` calls, then succeeds."""

    def __init__(self, times: int, error: type[Exception]) -> None:
        self.times, self.error, self.calls = times, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()
        return "offsets"


def test_group_coordinator_not_available_twice_then_an_answer() -> None:
    call = FailsFirst(2, GroupCoordinatorNotAvailableError)
    assert asyncio.run(retry_kafka(call, attempts=5, backoff=0.001)) == "offsets"
    assert call.calls == 3


def test_the_retries_are_bounded() -> None:
    call = FailsFirst(100, GroupCoordinatorNotAvailableError)
    with pytest.raises(GroupCoordinatorNotAvailableError):
        asyncio.run(retry_kafka(call, attempts=4, backoff=0.001))
    assert call.calls == 4


def test_an_error_that_is_not_retriable_is_raised_at_once() -> None:
    call = FailsFirst(1, GroupAuthorizationFailedError)
    assert not GroupAuthorizationFailedError.retriable
    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(retry_kafka(call, attempts=5, backoff=0.001))
    assert call.calls == 1


def test_status_asks_again_when_a_fresh_broker_has_no_group_coordinator_yet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.cli import status as ops
    from shared import lag
    from shared.settings import KontaktSettings

    fresh_broker = FailsFirst(2, GroupCoordinatorNotAvailableError)

    async def offsets(bootstrap: str, group: str, topics: list[str]) -> list[lag.PartitionLag]:
        await fresh_broker()
        return [lag.PartitionLag(group, topics[0], 0, 1, 1)]

    monkeypatch.setattr(lag, "_group_lag", offsets)
    report = asyncio.run(ops._kafka_status(KontaktSettings(), sample_seconds=0))
    assert not isinstance(report, str), report
    assert fresh_broker.calls == 2 + len(ops.status_groups(KontaktSettings()))
    assert {p["group"] for p in report["lags"]} == set(ops.status_groups(KontaktSettings()))
