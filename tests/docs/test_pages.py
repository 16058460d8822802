"""The README indexes every page and folder; decision pages keep their shape; no tracker numbers anywhere."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
DECISIONS = sorted((DOCS / "decisions").glob("2*.md"))
DECISION_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-[a-z0-9]+(-[a-z0-9]+)*\.md$")
SECTIONS = ("## Context", "## Decision", "## Evidence", "## Consequences")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s#]+)(#[^)\s]*)?\)")
# "issue 7", "issues 7 and 10", "the targets", "#16"; not a Markdown anchor (page.md#4-...).
TRACKER = re.compile(r"\bissues?\b|(?<![\w/])#\d+\b", re.IGNORECASE)


def _tracked() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return listing.stdout.splitlines()


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(f"\n{heading}\n", 1)[1]
    return [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| ")][1:]


def test_the_readme_indexes_every_docs_page() -> None:
    linked = set(
        re.findall(r"\]\(docs/([^)#]+)\)", "\n".join(_table_rows(README.read_text(), "## Documentation")))
    )
    pages = {path.name for path in DOCS.glob("*.md")} | {"decisions/README.md"}
    assert pages <= linked, f"pages missing from the README's table: {sorted(pages - linked)}"


def test_each_index_row_says_for_whom_and_what_it_answers() -> None:
    for row in _table_rows(README.read_text(), "## Documentation")[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 3 and all(cells), f"incomplete row: {row}"


def test_the_readme_layout_table_names_every_top_level_folder() -> None:
    folders = {name.split("/", 1)[0] for name in _tracked() if "/" in name}
    layout = "\n".join(_table_rows(README.read_text(), "## Architecture"))
    named = set(re.findall(r"`\.?([\w.-]+)/", layout)) | set(re.findall(r"`(\.[\w-]+)/", layout))
    missing = {folder for folder in folders if folder.lstrip(".") not in named and folder not in named}
    assert not missing, f"folders missing from the README's layout table: {sorted(missing)}"


def test_the_readme_layout_table_shows_the_test_layout() -> None:
    row = next(
        row for row in _table_rows(README.read_text(), "## Architecture") if row.startswith("| `tests/` |")
    )
    for folder in ("support/", "bench/", "bootstrap/", "policy/", "mockrun/", "workflows/"):
        assert f"`{folder}`" in row, f"tests/{folder} is not in the layout table's tests row"


def test_there_are_decision_pages() -> None:
    assert len(DECISIONS) >= 5


@pytest.mark.parametrize("page", DECISIONS, ids=lambda page: page.name)
def test_a_decision_page_is_dated_and_has_its_four_parts(page: Path) -> None:
    match = DECISION_NAME.match(page.name)
    assert match, f"{page.name}: name it YYYY-MM-DD-<slug>.md"
    text = page.read_text()
    assert re.search(rf"^Decided {match.group(1)}\b", text, flags=re.MULTILINE), (
        f"{page.name}: the first line after the title says 'Decided {match.group(1)}'"
    )
    positions = [text.find(f"\n{section}\n") for section in SECTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), (
        f"{page.name}: needs {', '.join(SECTIONS)} in that order"
    )
    assert re.search(r"\d", text.split("## Evidence", 1)[1].split("## Consequences", 1)[0]), (
        f"{page.name}: the evidence has no numbers"
    )


@pytest.mark.parametrize("index", ["decisions/README.md", "benchmarks.md"])
def test_every_decision_page_is_listed(index: str) -> None:
    text = (DOCS / index).read_text()
    for page in DECISIONS:
        assert page.name in text, f"{index} does not list {page.name}"


@pytest.mark.parametrize("page", [*DECISIONS, DOCS / "decisions" / "README.md"], ids=lambda page: page.name)
def test_links_from_decision_pages_resolve(page: Path) -> None:
    for target, _ in LINK.findall(page.read_text()):
        if not re.match(r"[a-z]+:", target):
            assert (page.parent / target).exists(), f"{page.name}: link to {target} does not resolve"


def test_no_tracker_references_in_the_docs_or_the_code() -> None:
    code = [REPO / name for name in _tracked() if name.endswith(".py") or name.startswith("scripts/")]
    code.remove(Path(__file__))  # its examples of what it looks for
    pages = [README, *DOCS.rglob("*.md"), *REPO.glob("bench/data/**/*.md"), *code]
    found = [
        f"{page.relative_to(REPO)}:{number}: {line.strip()}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if TRACKER.search(line)
    ]
    assert not found, "tracker references (say what and why instead):\n" + "\n".join(found)
