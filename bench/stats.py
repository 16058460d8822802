"""Latency summaries: the numbers every report row shows."""

import math
from collections.abc import Sequence

from pydantic import BaseModel


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class LatencySummary(BaseModel):
    """Seconds; `count` is the number of successful requests the figures are taken over."""

    count: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "LatencySummary | None":
        if not values:
            return None
        return cls(
            count=len(values),
            min=min(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            mean=sum(values) / len(values),
            max=max(values),
        )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
