"""Parse the `Server-Timing` response header (W3C Server Timing) into step durations."""

import contextlib
from collections.abc import Iterable, Mapping


def parse_server_timing(header: str | None) -> dict[str, float]:
    """`read;dur=1.2, inference;dur=830.5;desc="x"` → {"read": 1.2, "inference": 830.5} (milliseconds).

    Metrics without a `dur` parameter, or with one that is not a number, are skipped: the header
    is the server's report, and a benchmark must not fail on a malformed entry.
    """
    steps: dict[str, float] = {}
    if not header:
        return steps
    for metric in _split_unquoted(header, ","):
        name, *params = (part.strip() for part in _split_unquoted(metric, ";"))
        if not name:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            with contextlib.suppress(ValueError):
                steps[name] = float(value.strip().strip('"'))
            break
    return steps


def mean_steps(samples: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each step over the samples that report it (steps keep their first-seen order)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for sample in samples:
        for name, value in sample.items():
            totals[name] = totals.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    return {name: totals[name] / counts[name] for name in totals}


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split on `separator` outside double-quoted strings (desc values may contain commas)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
