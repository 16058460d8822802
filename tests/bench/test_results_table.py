"""docs/benchmarks.md's results table is the committed benchmarks/ JSON, written by bench.results_table."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import results_table

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_table_is_what_the_committed_results_give() -> None:
    page = results_table.PAGE.read_text()
    assert results_table.replace_table(page, results_table.table()) == page, (
        "docs/benchmarks.md's results table differs from benchmarks/: run scripts/bench-table"
    )


def test_every_row_reads_a_committed_result_file() -> None:
    """Not measured must mean a benchmark was not run, never a row whose file was renamed."""
    for label, relative, _ in results_table.ROWS:
        assert (results_table.RESULTS / relative).is_file(), f"{label}: benchmarks/{relative} is missing"


def test_a_missing_result_reads_not_measured(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks"
    shutil.copytree(results_table.RESULTS, results)
    (results / "gpu" / "gpu.json").unlink()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in results_table.table(results).splitlines()}
    gpu_row = rows["GPU, in-process (faster-whisper float16)"]
    assert "not measured" in gpu_row
    assert "not measured" not in rows["11 s clip through the API (verbose_json)"]


def test_a_new_result_changes_the_table(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks"
    shutil.copytree(results_table.RESULTS, results)
    coldstart = results / "coldstart" / "coldstart.json"
    report = json.loads(coldstart.read_text())
    report["medians"]["first_transcription_s"] = 7.77
    coldstart.write_text(json.dumps(report))
    assert "**7.77 s**" in results_table.table(results)
    assert "**7.77 s**" not in results_table.table()


def test_check_fails_on_a_stale_page_and_passes_once_regenerated(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(
        f"# Benchmarks\n\n{results_table.BEGIN}\n| an old table |\n{results_table.END}\n\nAfter.\n"
    )
    script = [sys.executable, str(REPO / "scripts" / "bench-table"), "--page", str(page)]
    stale = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
    assert subprocess.run(script, timeout=60).returncode == 0
    assert subprocess.run([*script, "--check"], timeout=60).returncode == 0
    text = page.read_text()
    assert "| an old table |" not in text
    assert text.startswith("# Benchmarks\n") and text.endswith(f"{results_table.END}\n\nAfter.\n")


def test_a_page_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        results_table.replace_table("# no markers\n", "| a |\n")
