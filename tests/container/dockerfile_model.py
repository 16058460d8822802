"""A small Dockerfile reader for tests/container: stages, instructions, inherited ENV, USER and CMD.

There is no Docker engine here, so the tests read service/Dockerfile the way BuildKit does: logical
lines (backslash continuations, comment lines dropped), one stage per FROM, and a target's settings
resolved through the stages it is built FROM.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from whisper_api import contract

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "service"
DOCKERFILE = SERVICE / "Dockerfile"
DOCKERIGNORE = SERVICE / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    value: str
    line: int

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or None for the shell form."""
        try:
            parsed = json.loads(self.value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed) else None


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        matches = [s for s in self.stages if s.name == name]
        assert matches, f"no stage named {name!r}"
        return matches[0]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        stages = [self.stage(name)]
        names = {s.name for s in self.stages}
        while stages[0].base in names:
            stages.insert(0, self.stage(stages[0].base))
        return stages

    def effective(self, name: str, keyword: str) -> list[Instruction]:
        return [i for stage in self.chain(name) for i in stage.of(keyword)]

    def env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.effective(name, "ENV"):
            for token in shlex.split(instruction.value):
                key, _, value = token.partition("=")
                env[key] = value
        return env

    def last(self, name: str, keyword: str) -> Instruction:
        found = self.effective(name, keyword)
        assert found, f"stage {name!r} has no {keyword}"
        return found[-1]


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s+")


def logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        lines.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    assert not buffer, "the Dockerfile ends inside a line continuation"
    return lines


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while match := _FLAG.match(rest):
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=parts[0]))
            continue
        instruction = Instruction(keyword, flags, rest.strip(), number)
        if not stages:
            assert keyword == "ARG", f"line {number}: only ARG may come before the first FROM"
            key, sep, default = instruction.value.partition("=")
            global_args[key] = default.strip('"') if sep else None
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def copied_from_context(dockerfile: Dockerfile) -> list[str]:
    """Every context path a COPY names, with `${WHISPER_ENGINE}` expanded for each engine."""
    sources = []
    for stage in dockerfile.stages:
        for copy in stage.of("COPY"):
            if "from" in copy.flags:
                continue
            for source in copy.value.split()[:-1]:
                sources += sorted(
                    {source.replace(f"${{{contract.BUILD_ARG_ENGINE}}}", e) for e in contract.ENGINES}
                )
    return sources
