"""Stall detection: a consumer group with lag whose committed offsets do not move.

Pure: samples of (group, topic, partition, committed offset, end offset) with
the moment they were taken go in, a verdict comes out. The committed offsets
are those Kafka reports for the group (what operators see), never a worker's
own belief of where it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class OffsetSample(Protocol):
    """What the detector needs to know of one partition at one moment."""

    @property
    def group(self) -> str:
        """The consumer group."""
        ...

    @property
    def topic(self) -> str:
        """The topic."""
        ...

    @property
    def partition(self) -> int:
        """The partition number."""
        ...

    @property
    def committed(self) -> int | None:
        """The group's committed offset (None: nothing committed yet)."""
        ...

    @property
    def end(self) -> int:
        """The partition's end offset."""
        ...


@dataclass(frozen=True)
class PartitionLag:
    """A group's committed offset and the end of one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Messages not yet committed by the group."""
        return self.end - (self.committed or 0)

    def as_dict(self) -> dict[str, Any]:
        """The partition's offsets as JSON-ready data."""
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        }


@dataclass(frozen=True)
class Stall(PartitionLag):
    """A partition with lag and no committed progress for at least the configured time."""

    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The stall as JSON-ready data."""
        return {**super().as_dict(), "stalled_seconds": round(self.seconds, 1)}

    def describe(self) -> str:
        """One line naming the group, partition and the offset it is stuck at."""
        at = "nothing committed" if self.committed is None else f"offset {self.committed}"
        return (
            f"group {self.group} stalled on {self.topic}[{self.partition}] at {at}"
            f" (end {self.end}, lag {self.lag}) for {self.seconds:.0f}s"
        )


class ConsumerStalledError(Exception):
    """One or more partitions of the process's groups are stalled."""

    def __init__(self, stalls: list[Stall]) -> None:
        super().__init__("; ".join(s.describe() for s in stalls))
        self.stalls = stalls


@dataclass
class _Progress:
    committed: int | None
    since: float  # when the committed offset last moved, or the lag last was 0


class StallDetector:
    """Judges partitions stalled from successive samples of committed and end offsets.

    A partition is stalled when it has lag and its committed offset has not
    changed for `stall_seconds`. A partition without lag is never stalled, and
    one whose committed offset moves is not either, however large its lag.
    A partition seen for the first time counts from that first sample: the
    detector cannot know what happened before it looked.
    """

    def __init__(self, stall_seconds: float) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive")
        self.stall_seconds = stall_seconds
        self._progress: dict[tuple[str, str, int], _Progress] = {}
        self._stalls: list[Stall] = []

    def observe(self, samples: Iterable[OffsetSample], now: float) -> list[Stall]:
        """Take one round of samples taken at `now` (seconds); the stalled partitions among them."""
        stalls = []
        seen = set()
        for s in samples:
            key = (s.group, s.topic, s.partition)
            seen.add(key)
            lag = s.end - (s.committed or 0)
            known = self._progress.get(key)
            if known is None or lag <= 0 or known.committed != s.committed:
                self._progress[key] = _Progress(s.committed, now)
                continue
            still = now - known.since
            if still >= self.stall_seconds:
                stalls.append(Stall(s.group, s.topic, s.partition, s.committed, s.end, still))
        # A partition gone from the samples (its topic deleted) is forgotten.
        for key in set(self._progress) - seen:
            del self._progress[key]
        self._stalls = sorted(stalls, key=lambda x: (x.group, x.topic, x.partition))
        return list(self._stalls)

    @property
    def stalls(self) -> list[Stall]:
        """The verdict of the latest round of samples."""
        return list(self._stalls)
