"""The docs stay true to the tree: links resolve, tables match the code, shown commands run."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from infra import config

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SCRIPTS = sorted(
    path for path in (REPO / "scripts").iterdir() if path.is_file() and not path.name.startswith("_")
)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading for #{anchor} in {resolved.name}"


def test_every_docs_page_says_what_it_is_for() -> None:
    for page in PAGES[1:]:
        assert "What this page is for" in page.read_text()[:600], f"{page.name} does not say what it is for"


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 180
    assert lines[3].startswith("make run") and lines[4].startswith("make test")


def test_every_stack_key_is_in_the_deploy_configuration_table() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"^\| `([\w:.]+)` \|", text, flags=re.MULTILINE))
    expected = config.documented_keys()
    assert {f"{config.NAMESPACE}:batch.enabled", f"{config.NAMESPACE}:spendCap.role"} <= expected
    assert expected <= documented, f"undocumented keys: {sorted(expected - documented)}"


def test_every_make_target_the_docs_show_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    for page in PAGES:
        for target in re.findall(r"`make ([a-z][\w-]*)", page.read_text()):
            assert target in targets, f"{page.name} shows `make {target}`, which the Makefile lacks"


def outside_the_venv() -> dict[str, str]:
    """A plain shell's environment: no venv on PATH, no project PYTHONPATH."""
    venv_bin = str(REPO / ".venv" / "bin")
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = os.pathsep.join(
        entry for entry in env.get("PATH", "").split(os.pathsep) if entry and entry != venv_bin
    )
    return env


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_answers_help_from_a_plain_shell(script: Path) -> None:
    """`scripts/X --help` as the docs show it, from a shell that never activated `.venv`."""
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: `make test` creates it")
    result = subprocess.run(
        [str(script), "--help"], cwd=REPO, env=outside_the_venv(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) >= 1
