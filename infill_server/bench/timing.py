"""Repeated timing on a shared machine: percentiles, time budgets, peak memory.

Other processes share the CPU, so one number means little: every case runs several times, reports
p50/p90, and variants are compared inside one run (ratios), so that a busy neighbour slows both sides.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Samples:
    """Milliseconds of repeated runs of one case."""

    values: list[float] = field(default_factory=list)

    def add(self, ms: float) -> None:
        self.values.append(ms)

    @property
    def p50(self) -> float:
        return percentile(self.values, 50)

    @property
    def p90(self) -> float:
        return percentile(self.values, 90)

    def summary(self) -> dict:
        return {"p50": round(self.p50, 2), "p90": round(self.p90, 2), "runs": len(self.values)}


@dataclass(frozen=True)
class Budget:
    """At least `min_runs`, at most `max_runs`, and no new run once `seconds` have passed.

    Past `deadline` (a time.perf_counter() value for the whole run) a case gets one run only, so that a
    run on a busy machine still ends in time (--quick promises under two minutes).
    """

    min_runs: int
    max_runs: int
    seconds: float
    deadline: float | None = None

    def runs(self) -> Callable[[], bool]:
        started = time.perf_counter()
        count = 0

        def another() -> bool:
            nonlocal count
            now = time.perf_counter()
            if self.deadline is not None and now > self.deadline:
                go = count == 0
            else:
                go = count < self.min_runs or (count < self.max_runs and now - started < self.seconds)
            count += go
            return go

        return another


def time_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def repeat(fn: Callable[[], object], budget: Budget, warmup: int = 1) -> Samples:
    for _ in range(warmup):
        fn()
    samples = Samples()
    another = budget.runs()
    gc.collect()
    while another():
        samples.add(time_ms(fn))
    return samples


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
