"""docs/troubleshooting.md names every error code and HTTP error status the service can answer with.

The codes are read from the service's source, wherever a module sets one: a `code=` or
`error_code=` argument, a `code` parameter's default, a `code = "..."` assignment (class attributes
included), or a positional argument in a `code` parameter's place. A code added anywhere in
service/whisper_api without a line on the page fails here.
"""

import ast
import re
from http import HTTPStatus
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "service" / "whisper_api"
PAGE = REPO / "docs" / "troubleshooting.md"
CODE_NAMES = {"code", "error_code"}


def _text(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _code_positions(trees: list[ast.Module]) -> dict[str, int]:
    """Callables with a `code` parameter, and its position as a caller writes it (no self)."""
    positions = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                init = next(
                    (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
                )
                if init is not None:
                    names = [a.arg for a in init.args.args][1:]
                    if "code" in names:
                        positions[node.name] = names.index("code")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.args]
                if names and names[0] in {"self", "cls"}:
                    names = names[1:]
                if "code" in names:
                    positions[node.name] = names.index("code")
    return positions


def codes_in_service() -> set[str]:
    trees = [ast.parse(path.read_text()) for path in sorted(SERVICE.rglob("*.py"))]
    positions = _code_positions(trees)
    codes: set[str | None] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                codes |= {_text(k.value) for k in node.keywords if k.arg in CODE_NAMES}
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in positions and len(node.args) > positions[name]:
                    codes.add(_text(node.args[positions[name]]))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                codes |= {
                    _text(d) for a, d in zip(arguments, node.args.defaults, strict=True) if a.arg == "code"
                }
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in CODE_NAMES:
                        codes.add(_text(node.value))
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for element, value in zip(target.elts, node.value.elts, strict=False):
                            if isinstance(element, ast.Name) and element.id in CODE_NAMES:
                                codes.add(_text(value))
    return {code for code in codes if code}


def error_statuses_in_service() -> set[int]:
    """Every 4xx/5xx the service names: `HTTPStatus.X` and integer `status_code = ...` attributes."""
    statuses = set()
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "HTTPStatus"
                and node.attr in HTTPStatus.__members__
            ):
                statuses.add(int(HTTPStatus[node.attr]))
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int)
                and any(isinstance(t, ast.Name) and t.id == "status_code" for t in node.targets)
            ):
                statuses.add(node.value.value)
    return {status for status in statuses if status >= 400}


def test_the_source_scan_finds_the_codes_of_every_kind_of_site() -> None:
    """One code from each way the service sets one, so that a blind scan cannot pass."""
    codes = codes_in_service()
    assert {
        "empty_file",  # AudioError(..., code="empty_file")
        "invalid_audio",  # AudioError's default
        "queue_full",  # a class attribute
        "not_found",  # `message, code = "...", "not_found"`
        "header_timeout",  # a positional argument
        "storage_error",  # a positional argument to an exception class
        "cancelled",  # error_code= in a manifest line
    } <= codes


def test_every_error_code_the_service_sets_is_on_the_page() -> None:
    documented = set(re.findall(r"`([a-z][a-z0-9_]+)`", PAGE.read_text()))
    missing = codes_in_service() - documented
    assert not missing, f"docs/troubleshooting.md lacks: {sorted(missing)}"


def test_every_error_status_the_service_answers_with_is_on_the_page() -> None:
    text = PAGE.read_text()
    missing = {status for status in error_statuses_in_service() if not re.search(rf"\b{status}\b", text)}
    assert not missing, f"docs/troubleshooting.md lacks the statuses {sorted(missing)}"
