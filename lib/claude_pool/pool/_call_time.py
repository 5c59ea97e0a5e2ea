"""How long before its deadline a request must be sent for its call to finish in time."""

from __future__ import annotations

__all__ = ["CallTime"]


class CallTime:
    """The time from a call's place in the queue coming to its answer (the wake-up's lateness on a
    busy worker included), estimated as TCP estimates a round trip (RFC 6298): a smoothed mean and
    a smoothed mean deviation, from answered calls.

    ``needed`` is the mean and two deviations (about the 95th percentile of a normal spread): a
    request is not given a place that comes later than that before its deadline, and one that
    wakes with less left gives its place back unsent. The mean alone let a call slower than
    average at the tail of a queue be cut at the deadline after upstream served it, a unit of
    capacity spent for nothing; four deviations, as TCP's retransmission timer uses, would keep
    requests with a deadline a few calls long out of any queue where calls vary widely.
    """

    GAIN = 1 / 8
    DEVIATION_GAIN = 1 / 4
    DEVIATIONS = 2

    def __init__(self) -> None:
        self._mean: float | None = None
        self._deviation = 0.0

    @property
    def needed(self) -> float:
        """Seconds a call needs before the deadline; 0 until a call has been answered."""
        if self._mean is None:
            return 0.0
        return self._mean + self.DEVIATIONS * self._deviation

    def observe(self, seconds: float) -> None:
        """An answered call's time, from when its place came to its answer."""
        mean = self._mean
        if mean is None:
            self._mean, self._deviation = seconds, seconds / 2
            return
        self._deviation += self.DEVIATION_GAIN * (abs(seconds - mean) - self._deviation)
        self._mean = mean + self.GAIN * (seconds - mean)
