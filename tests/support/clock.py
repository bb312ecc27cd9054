"""Time that only moves when something sleeps: nothing in the unit tests really sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = START
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        """Time passing outside the code under test (Airflow between two pokes): not a sleep."""
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        """The same time as a monotonic clock reads it (seconds), for the hook's query bucket."""
        return self.elapsed()

    def elapsed(self) -> float:
        return (self.now - START).total_seconds()
