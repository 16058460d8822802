"""Benchmark library behind `scripts/bench`, `scripts/bench-engines` and `scripts/bench-coldstart`.

A package at the top level (beside `service/` and `infra/`) rather than code inside the scripts:
the scripts stay thin CLIs, and the maths (percentiles, cost, break-even, Server-Timing parsing,
report writing) is importable by `tests/bench/` through the project's `PYTHONPATH` (`service:.`).
Nothing here imports the service: the benchmarks measure it from outside, as a client would.
"""
