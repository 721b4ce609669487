"""The stall detector: samples of committed and end offsets in, a verdict out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.stall import ConsumerStalledError, StallDetector


@dataclass(frozen=True)
class Sample:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int


def at(committed: int | None, end: int, partition: int = 0, group: str = "g") -> Sample:
    return Sample(group, "t", partition, committed, end)


def test_lag_without_committed_progress_for_the_stall_time_is_a_stall() -> None:
    d = StallDetector(60)
    assert d.observe([at(5, 9)], now=0) == []
    assert d.observe([at(5, 9)], now=59.9) == []
    [stall] = d.observe([at(5, 12)], now=60)
    assert (stall.group, stall.topic, stall.partition, stall.committed, stall.end) == (
        "g", "t", 0, 5, 12,
    )  # fmt: skip
    assert stall.seconds == 60 and stall.lag == 7
    assert "g" in stall.describe() and "t[0]" in stall.describe() and "offset 5" in stall.describe()
    assert d.stalls == [stall]


def test_a_moving_partition_is_never_stalled_however_large_its_lag() -> None:
    d = StallDetector(10)
    for i in range(20):
        assert d.observe([at(i, 1000)], now=i * 9) == []


def test_no_lag_is_never_a_stall() -> None:
    d = StallDetector(10)
    for i in range(10):
        assert d.observe([at(7, 7)], now=i * 100) == []


def test_progress_resets_the_clock_and_a_new_freeze_counts_from_there() -> None:
    d = StallDetector(10)
    d.observe([at(1, 5)], now=0)
    assert len(d.observe([at(1, 5)], now=11)) == 1
    assert d.observe([at(2, 5)], now=12) == []  # moved: no longer stalled
    assert d.observe([at(2, 5)], now=21) == []
    assert len(d.observe([at(2, 5)], now=22)) == 1


def test_lag_appearing_after_an_idle_time_counts_from_the_last_sample_without_lag() -> None:
    d = StallDetector(10)
    d.observe([at(3, 3)], now=0)
    d.observe([at(3, 3)], now=100)  # idle for long: not stalled, and the clock restarts
    assert d.observe([at(3, 8)], now=105) == []
    assert len(d.observe([at(3, 8)], now=110)) == 1


def test_a_group_that_never_committed_stalls_on_its_first_message() -> None:
    d = StallDetector(5)
    d.observe([at(None, 4)], now=0)
    [stall] = d.observe([at(None, 4)], now=5)
    assert stall.committed is None and stall.lag == 4
    assert "nothing committed" in stall.describe()


def test_each_partition_and_group_is_judged_alone() -> None:
    d = StallDetector(10)
    d.observe([at(1, 5, 0), at(1, 5, 1), at(1, 5, 0, "h")], now=0)
    stalls = d.observe([at(1, 5, 0), at(3, 5, 1), at(1, 5, 0, "h")], now=10)
    assert [(s.group, s.partition) for s in stalls] == [("g", 0), ("h", 0)]


def test_a_partition_missing_from_a_round_is_forgotten() -> None:
    d = StallDetector(10)
    d.observe([at(1, 5, 0)], now=0)
    d.observe([], now=5)
    assert d.observe([at(1, 5, 0)], now=12) == []  # counted afresh from 12


def test_the_error_names_every_stalled_partition() -> None:
    d = StallDetector(1)
    d.observe([at(1, 5, 0), at(2, 5, 3)], now=0)
    error = ConsumerStalledError(d.observe([at(1, 5, 0), at(2, 5, 3)], now=2))
    assert "t[0] at offset 1" in str(error) and "t[3] at offset 2" in str(error)
    assert [s.as_dict()["partition"] for s in error.stalls] == [0, 3]


def test_the_stall_time_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StallDetector(0)
