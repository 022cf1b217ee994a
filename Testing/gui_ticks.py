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
        self.ticks: list[tuple[float, bool]] = []
        self.timer = QtCore.QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append((time.monotonic(), bool(self.busy()))))
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def busy_ticks(self) -> int:
        return sum(1 for _, busy in self.ticks if busy)

    def longest_gap(self) -> float:
        times = [when for when, _ in self.ticks]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)
