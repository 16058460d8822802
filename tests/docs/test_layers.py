"""Who may import whom: the rules of docs/development.md, checked by walking every module's imports.

The rules are the data below; the development page lists the same table (a test compares them), so
the page cannot promise a rule the tree does not keep, nor the tree drop one the page still states.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVELOPMENT_PAGE = REPO / "docs" / "development.md"
# Folders whose modules are imported with the folder itself on sys.path (service/whisper_api -> whisper_api).
SOURCE_ROOTS = ("service",)


@dataclass(frozen=True)
class Rule:
    """Modules matching `paths` (globs from the repository root) import nothing under `forbidden`.

    A name is under a prefix when it is the prefix or starts with it and a dot (`whisper` does not
    cover `whisper_api`); `allowed` names stay importable although a forbidden prefix covers them.
    """

    layer: str
    paths: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    why: str = ""


ENGINE_LIBRARIES = ("faster_whisper", "whisper", "ctranslate2", "torch", "onnxruntime")
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")

RULES = (
    Rule(
        "routes",
        ("service/whisper_api/routes/**/*.py",),
        ENGINE_LIBRARIES,
        why="routes validate and hand a typed request to the pipeline; engines own their libraries",
    ),
    Rule(
        "scheduler",
        ("service/whisper_api/scheduler.py",),
        WEB_FRAMEWORKS,
        why="the queue and its workers run the same under the API and the batch worker",
    ),
    Rule(
        "realtime",
        ("service/whisper_api/realtime/**/*.py",),
        WEB_FRAMEWORKS,
        why="a live session runs the same under any transport; routes/realtime.py adapts the WebSocket",
    ),
    Rule(
        "engines",
        ("service/whisper_api/engines/**/*.py",),
        ("fastapi", "starlette", "whisper_api.routes"),
        why="an engine turns samples into segments and knows nothing of HTTP",
    ),
    Rule(
        "bench",
        ("bench/**/*.py",),
        ("tests",),
        why="measuring code is a library of its own; tests may import bench, never the reverse",
    ),
    Rule(
        "infra",
        ("infra/**/*.py",),
        ("whisper_api",),
        allowed=("whisper_api.contract",),
        why="the Pulumi program and its bootstrap, policy and spend-cap function deploy the service "
        "without its dependencies; they share only the contract",
    ),
)


@dataclass(frozen=True)
class Violation:
    rule: str
    module: str
    line: int
    imported: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} (rule: {self.rule})"


def module_name(path: Path, root: Path) -> str:
    """The dotted name Python gives the file, with service/ as a source root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] in SOURCE_ROOTS:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, root: Path) -> list[tuple[int, tuple[str, ...]]]:
    """Each import statement's line and the names it may bind (relative imports resolved).

    `from pkg import name` may import the submodule `pkg.name` or an attribute of `pkg`: the
    statement's names are `pkg.name` for each name, which a prefix rule judges either way.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, (alias.name,)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.append((node.lineno, tuple(f"{base}.{alias.name}" for alias in node.names)))
        elif isinstance(node, ast.Call) and _puts_tests_on_sys_path(node):
            found.append((node.lineno, ("tests",)))
    return found


def _puts_tests_on_sys_path(call: ast.Call) -> bool:
    """`sys.path.insert(0, str(REPO / "tests" / ...))`: importing tests under another name."""
    target = call.func
    on_sys_path = (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Attribute)
        and target.value.attr == "path"
        and isinstance(target.value.value, ast.Name)
        and target.value.value.id == "sys"
    )
    strings = [n.value for arg in call.args for n in ast.walk(arg) if isinstance(n, ast.Constant)]
    return on_sys_path and any(isinstance(s, str) and re.match(r"^/?tests\b", s) for s in strings)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def breaks(rule: Rule, name: str) -> bool:
    return any(_under(name, p) for p in rule.forbidden) and not any(_under(name, a) for a in rule.allowed)


def check(root: Path, rules: tuple[Rule, ...] = RULES) -> list[Violation]:
    """One violation per import statement that binds a name a rule forbids."""
    violations = []
    for rule in rules:
        for path in sorted({path for pattern in rule.paths for path in root.glob(pattern)}):
            for line, names in imports(path, root):
                bad = next((name for name in names if breaks(rule, name)), None)
                if bad is not None:
                    violations.append(Violation(rule.layer, str(path.relative_to(root)), line, bad))
    return violations


def page_rules() -> list[tuple[str, str, str]]:
    """The rows of the development page's rules table: layer, paths, what it never imports."""
    text = DEVELOPMENT_PAGE.read_text()
    table = text.split("<!-- import-rules -->")[1].split("<!-- /import-rules -->")[0]
    rows = re.findall(r"^\| \*\*(\w+)\*\* \| (.+?) \| (.+?) \|", table, flags=re.MULTILINE)
    return [(layer, paths, never) for layer, paths, never in rows]


def rendered(rule: Rule) -> tuple[str, str, str]:
    """How the page writes a rule: the same names, in code spans."""
    paths = ", ".join(f"`{p}`" for p in rule.paths)
    never = ", ".join(f"`{name}`" for name in rule.forbidden)
    if rule.allowed:
        never += " (except " + ", ".join(f"`{name}`" for name in rule.allowed) + ")"
    return rule.layer, paths, never


def test_the_tree_keeps_every_import_rule() -> None:
    violations = check(REPO)
    assert not violations, "import rules broken:\n" + "\n".join(map(str, violations))


def test_the_rules_cover_real_files() -> None:
    """A rule whose globs match nothing (a moved folder) would pass forever."""
    for rule in RULES:
        assert any(REPO.glob(p) for p in rule.paths), f"rule {rule.layer} matches no file"


def test_the_development_page_lists_exactly_these_rules() -> None:
    assert page_rules() == [rendered(rule) for rule in RULES]


# A small tree that breaks each rule once, beside imports each rule allows.
BROKEN_TREE = {
    "service/whisper_api/routes/audio.py": "from faster_whisper.tokenizer import _LANGUAGE_CODES\n",
    "service/whisper_api/routes/health.py": "from whisper_api import readiness\nimport whisper_api.schemas\n",
    "service/whisper_api/scheduler.py": "def f():\n    from starlette.responses import Response\n",
    "service/whisper_api/engines/faster.py": "from ..routes import audio\n",
    "service/whisper_api/engines/openai.py": "import whisper\nfrom whisper_api.engines.base import Engine\n",
    "service/whisper_api/realtime/connection.py": "from fastapi import WebSocket\n",
    "service/whisper_api/realtime/session.py": "from whisper_api.realtime import events\nimport anyio\n",
    "bench/coldstart.py": "from tests.support import server\n",
    "bench/images.py": 'import sys\nsys.path.insert(0, str(REPO / "tests" / "container"))\n',
    "bench/stats.py": "import statistics\nfrom bench import machine\n",
    "infra/bootstrap/__main__.py": "from whisper_api.settings import Settings\n",
    "infra/policy/pack.py": "from whisper_api.contract import API_PREFIX\n",
    "infra/shared.py": "import whisper_api.contract\n",
}
EXPECTED = {
    ("routes", "service/whisper_api/routes/audio.py", "faster_whisper.tokenizer._LANGUAGE_CODES"),
    ("scheduler", "service/whisper_api/scheduler.py", "starlette.responses.Response"),
    ("engines", "service/whisper_api/engines/faster.py", "whisper_api.routes.audio"),
    ("realtime", "service/whisper_api/realtime/connection.py", "fastapi.WebSocket"),
    ("bench", "bench/coldstart.py", "tests.support.server"),
    ("bench", "bench/images.py", "tests"),
    ("infra", "infra/bootstrap/__main__.py", "whisper_api.settings.Settings"),
}


@pytest.fixture
def broken_tree(tmp_path: Path) -> Path:
    for relative, source in BROKEN_TREE.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(source)
    return tmp_path


def test_the_checker_finds_each_broken_rule_and_nothing_else(broken_tree: Path) -> None:
    found = {(v.rule, v.module, v.imported) for v in check(broken_tree)}
    assert found == EXPECTED


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.layer)
def test_each_rule_alone_fails_on_its_violation(broken_tree: Path, rule: Rule) -> None:
    assert {v.rule for v in check(broken_tree, (rule,))} == {rule.layer}
