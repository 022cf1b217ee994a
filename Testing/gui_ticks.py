"""A QTimer in the GUI thread that records when it fired: how the GUI tests show the event loop
kept running (longest gap between ticks) while work went on elsewhere. Import it after the test
module's `pytest.importorskip("PySide6...")`."""
from __future__ import annotations

import time

from PySide6 import QtCore


class TickRecorder:
    """A QTimer in the GUI thread: when it fired, whether `busy()` was true then, the longest gap."""

    def __init__(self, busy, interval_ms: int = 20):
        self.busy = busy
        self.interval = interval_ms / 1000.0
        self.started = time.monotonic()
        self.stopped: float | None = None
        self.ticks: list[tuple[float, bool]] = []
        self.timer = QtCore.QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append((time.monotonic(), bool(self.busy()))))
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.stopped = time.monotonic()

    def responsive(self, most: int = 3) -> bool:
        """Whether the timer ticked while busy at least a quarter as often as the recorded span
        allowed, at least once, and `most` times is always enough (a CI run on a loaded machine
        saw 4 ticks during an import). A ratio, not a time limit: short work leaves few ticks,
        while a GUI thread blocked throughout leaves none while busy."""
        span = (self.stopped if self.stopped is not None else time.monotonic()) - self.started
        wanted = min(most, max(1, int(span / self.interval / 4)))
        return self.busy_ticks() >= wanted

    def busy_ticks(self) -> int:
        return sum(1 for _, busy in self.ticks if busy)

    def longest_gap(self) -> float:
        times = [when for when, _ in self.ticks]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)
