"""The kernel's own added delay per echoed packet, counted, and the point past which to shed.

Each packet from the browser carries abs-send-time: the browser's clock when its pacer sent the
packet (6.18 fixed-point seconds, 24 bits, wrapping every 64 s). Just before the echo's
``sendto``, :class:`AddedDelay` compares it with the kernel's clock. That transit time is the
clocks' offset plus the path's delay; the smallest transit seen recently stands for the offset
and the base delay, and what a packet has beyond it is delay added on the way. On a loopback
or a quiet network that is the time the packet waited in the kernel's socket buffer and event
loop: the server's own share. Packets without abs-send-time are not measured.

"Recently" is a window of 30 to 60 s, so that two machines' clocks drifting apart (tens of
parts per million) never look like delay; an overload that lets no packet through on time for
longer than that would look normal again, which shedding (:mod:`.forwarder`) prevents by
letting fresh packets through.

:class:`DelayHistogram` counts the delays in 1 ms steps, so percentiles over any interval come
from two copies of its counts.
"""

from __future__ import annotations

from collections.abc import Sequence

SHED_AFTER_MS = 40.0
"""The added delay over which, once it has lasted :data:`SHED_INTERVAL`, packets are shed."""
SHED_INTERVAL = 0.1
"""Seconds without a packet on time that make a standing queue rather than a burst."""

ABS_SEND_TIME_HZ = 1 << 18
"""abs-send-time's units per second (6.18 fixed point)."""
_WRAP_MASK = (1 << 24) - 1
_HALF = 1 << 23
BASE_WINDOW = 30.0
"""Seconds per half of the window the smallest transit is taken over."""


class AddedDelay:
    """One incoming stream's packets: how much later than the fastest recent one each leaves."""

    __slots__ = ("_current", "_previous", "_window_end")

    def __init__(self) -> None:
        self._current: int | None = None
        """The smallest transit of this half window (abs-send-time units)."""
        self._previous: int | None = None
        """The smallest transit of the half window before."""
        self._window_end = 0.0

    def added_ms(self, abs_send_time: int, now: float) -> float:
        """The delay added to a packet stamped ``abs_send_time``, leaving at ``now``
        (seconds, a monotonic clock), in milliseconds; 0 for the fastest so far."""
        transit = (int(now * ABS_SEND_TIME_HZ) - abs_send_time) & _WRAP_MASK
        if now >= self._window_end:
            self._previous, self._current = self._current, None
            self._window_end = now + BASE_WINDOW
        current, previous = self._current, self._previous
        if current is None or (transit - current) & _WRAP_MASK >= _HALF:
            self._current = current = transit
        base = current
        if previous is not None and (previous - current) & _WRAP_MASK >= _HALF:
            base = previous
        return ((transit - base) & _WRAP_MASK) * 1000 / ABS_SEND_TIME_HZ


class StandingDelay:
    """CoDel's test for a queue that does not drain: no packet has been on time (added delay
    at most ``target_ms``) for ``interval`` seconds. A burst the loop catches up with passes;
    a kernel that stays behind does not."""

    __slots__ = ("_on_time_at", "interval", "target_ms")

    def __init__(self, target_ms: float = SHED_AFTER_MS, interval: float = SHED_INTERVAL) -> None:
        self.target_ms = target_ms
        self.interval = interval
        self._on_time_at: float | None = None

    def standing(self, added_ms: float, now: float) -> bool:
        """Whether a packet with ``added_ms`` at ``now`` (seconds) is behind a standing queue."""
        if added_ms <= self.target_ms:
            self._on_time_at = now
            return False
        if self._on_time_at is None:
            self._on_time_at = now
        return now - self._on_time_at >= self.interval


class DelayHistogram:
    """Delays counted in 1 ms steps up to 1 s; the last step holds all longer ones."""

    __slots__ = ("counts",)

    STEPS = 1001

    def __init__(self) -> None:
        self.counts = [0] * self.STEPS

    def add(self, ms: float) -> None:
        """Count one delay."""
        self.counts[min(int(ms), self.STEPS - 1)] += 1

    def copy(self) -> list[int]:
        """The counts so far, to take percentiles since now with :func:`percentiles_since`."""
        return list(self.counts)


def percentiles_since(now: Sequence[int], earlier: Sequence[int] | None,
                      quantiles: Sequence[float]) -> dict[str, float] | None:
    """``{"p50": ms, ...}`` of the delays counted between two copies of a histogram's counts
    (``earlier`` None: since the start), each the upper edge of its 1 ms step; None when
    nothing was counted in between."""
    counts = [n - e for n, e in zip(now, earlier, strict=True)] if earlier is not None \
        else list(now)
    total = sum(counts)
    if total == 0:
        return None
    result: dict[str, float] = {}
    for q in quantiles:
        wanted = q / 100 * total
        seen = 0
        for step, count in enumerate(counts):
            seen += count
            if count and seen >= wanted:
                result[f"p{q:g}"] = float(step + 1)
                break
    return result
