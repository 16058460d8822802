"""One reader for every key: it parses a value, and on a mistake records a line naming the key, what is
wrong and the command that fixes it, then goes on with the default so that every mistake is reported.

`Reader` reads the plain `whisper:<key>` strings Pulumi hands over; `Section` the JSON object under one
key (`whisper:budget`, `whisper:batch`, ...), whose fixes use `pulumi config set --path`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from infra.config.cloud_run import MEMBER_PREFIXES, PUBLIC_MEMBERS
from infra.config.keys import NAMESPACE

T = TypeVar("T")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SERVICE_ACCOUNT = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)


class ConfigError(ValueError):
    """The stack configuration is invalid; `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the stack configuration:\n{lines}")


def fix(key: str, example: object) -> str:
    """The command that sets a plain key (`cpu`, or a full `gcp:project`)."""
    ns_key = key if ":" in key else f"{NAMESPACE}:{key}"
    return f"pulumi config set {ns_key} {example}"


def parse_int(text: str) -> int:
    number = float(text)  # YAML numbers may arrive as "4.0"
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1"}:
        return True
    if lowered in {"false", "no", "0"}:
        return False
    raise ValueError(text)


def is_number(value: object) -> bool:
    """JSON numbers only: `true` is an int to Python, never a number to a stack file."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class Reader:
    """Parses raw Pulumi config strings, collecting every problem instead of stopping at one."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def check(self) -> None:
        """Raise every problem found so far, in the order the keys were read."""
        if self.problems:
            raise ConfigError(self.problems)

    def value(self, key: str) -> str | None:
        return self.raw.get(f"{NAMESPACE}:{key}")

    def unknown_keys(self, known: tuple[str, ...]) -> None:
        for key in sorted(self.raw):
            if key.startswith(f"{NAMESPACE}:") and key.split(":", 1)[1] not in known:
                self.fail(f"{key} is not a known key (known: {', '.join(known)}) — pulumi config rm {key}")

    def _typed(self, key: str, default: T, parse: Callable[[str], T], kind: str, example: str) -> T:
        text = self.value(key)
        if text is None or text == "":
            return default
        try:
            return parse(text)
        except (ValueError, TypeError):
            self.fail(f"{NAMESPACE}:{key} {text!r} is not {kind} — {fix(key, example)}")
            return default

    def string(self, key: str, default: str) -> str:
        return self._typed(key, default, str, "a string", default)

    def integer(self, key: str, default: int) -> int:
        return self._typed(key, default, parse_int, "a whole number", str(default))

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, default, parse_bool, "true or false", str(default).lower())

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            self.fail(
                f"{NAMESPACE}:{key} {value!r} is unknown; use one of {', '.join(choices)} — "
                f"{fix(key, default)}"
            )
        return value

    def json(self, key: str, default: Any, kind: type, example: str) -> Any:
        def parse(text: str) -> Any:
            value = json.loads(text)
            if not isinstance(value, kind):
                raise TypeError(kind)
            return value

        return self._typed(key, default, parse, f"a {kind.__name__} (JSON or YAML)", example)

    def section(self, key: str, example_key: str, example: str) -> Section | None:
        """The object under `whisper:<key>`; None when it is absent (or not an object, reported)."""
        raw = self.json(key, None, dict, f"--path '{key}.{example_key}' {example}")
        return None if raw is None else Section(self, key, raw)

    def members(
        self, key: str, members: Iterable[Any], *, fix: str, public: str, like: str = "", email: str = "email"
    ) -> None:
        """IAM members: a known prefix, a well-formed address, and never everyone unless asked for."""
        for member in members:
            if member in PUBLIC_MEMBERS:
                self.fail(f"{key} contains {member!r}{public}")
            elif not isinstance(member, str) or not member.startswith(MEMBER_PREFIXES):
                self.fail(f"{key} entry {member!r} is not an IAM member{like} — {fix}")
            elif member.split(":", 1)[0] in {"user", "group", "serviceAccount"} and not EMAIL.match(
                member.split(":", 1)[1]
            ):
                self.fail(f"{key} entry {member!r} has a malformed {email} address — {fix}")

    def service_account(self, key: str, email: object, project: str, fix: str, note: str = "") -> None:
        """A service account's e-mail, and one of this stack's project (the bootstrap's, or made here)."""
        if email is None:
            return
        if (
            not isinstance(email, str)
            or not SERVICE_ACCOUNT.match(email)
            or not email.endswith(f"@{project}.iam.gserviceaccount.com")
        ):
            self.fail(f"{key} {email!r} must be a service account e-mail in {project}{note} — {fix}")


class Section:
    """One JSON object under `whisper:`: each value checked in place, each fix a `--path` command."""

    def __init__(self, reader: Reader, name: str, raw: Mapping[str, Any]) -> None:
        self.reader = reader
        self.name = name
        self.raw = raw
        self.key = f"{NAMESPACE}:{name}"

    def fail(self, message: str) -> None:
        self.reader.fail(message)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def fix(self, key: str, example: object) -> str:
        return f"pulumi config set --path '{self.key}.{key}' {example}"

    def unknown_keys(self, known: tuple[str, ...]) -> None:
        for key in sorted(set(self.raw) - set(known)):
            self.fail(
                f"{self.key}.{key} is not a known key (known: {', '.join(known)}) — "
                f"pulumi config rm --path '{self.key}.{key}'"
            )

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{self.key}.{key} {value!r} is not true or false — {self.fix(key, 'true')}")
            return default
        return value

    def whole(self, key: str, default: int, high: int, meaning: str, low: int = 0) -> int:
        """A whole number in [low, high]; YAML may hand it over as a string or a float."""
        value = self.raw.get(key, default)
        try:
            number = None if isinstance(value, bool) else parse_int(str(value))
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            self.fail(
                f"{self.key}.{key} {value!r} must be a whole number from {low} to {high} ({meaning}) — "
                f"{self.fix(key, default)}"
            )
            return default
        return number

    def number(
        self, key: str, default: float, high: float, meaning: str, *, note: str = "", example: str = ""
    ) -> float:
        """A number in (0, high]; the default (reported) otherwise."""
        value = self.raw.get(key, default)
        if not is_number(value) or not 0 < value <= high:
            self.fail(
                f"{self.key}.{key} {value!r} must be {meaning} in (0, {high:g}]{note} — "
                f"{self.fix(key, example or f'{default:g}')}"
            )
            return default
        return float(value)

    def one_of(self, key: str, default: int, choices: tuple[int, ...]) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or value not in choices:
            self.fail(
                f"{self.key}.{key} {value!r} must be one of {', '.join(map(str, choices))} — "
                f"{self.fix(key, default)}"
            )
            return default
        return int(value)

    def listed(self, key: str, default: list[Any]) -> list[Any]:
        """A list, where a single value stands for a list of one."""
        values = self.raw.get(key, default)
        return values if isinstance(values, list) else [values]

    def emails(self, example: str) -> list[Any]:
        """`<section>.emails` as a list, each entry checked."""
        emails = self.listed("emails", [])
        for email in emails:
            if not isinstance(email, str) or not EMAIL.match(email):
                self.fail(
                    f"{self.key}.emails entry {email!r} is not an email address — "
                    f"{self.fix('emails[0]', example)}"
                )
        return emails
