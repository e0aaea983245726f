"""The Dockerfile and .dockerignore, read the way the builder reads them.

Without a container engine on the test machines, the image build itself
cannot run; what can be known from the files is checked instead: the stages
and what each target runs, the user, the health check, the base image, and
which files the build context holds.
"""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.manifests import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :]
        return json.loads(text)

    def env(self) -> dict[str, str]:
        """The variables of an ENV instruction (key=value form)."""
        return dict(pair.split("=", 1) for pair in shlex.split(self.arguments))


@dataclass
class Stage:
    """A FROM and what follows it."""

    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, comments dropped, continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    return result


def parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """(ARGs before the first FROM with their defaults, stages by name)."""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", instruction.arguments, re.I)
            assert match, f"line {instruction.line}: every stage is named"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is None:
            assert instruction.keyword == "ARG", instruction
            name, _, default = instruction.arguments.partition("=")
            global_args[name] = default
        else:
            current.instructions.append(instruction)
    return global_args, stages


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    chain = [stages[name]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def inherited(stages: dict[str, Stage], name: str, keyword: str) -> Instruction | None:
    """The instruction of ``keyword`` that is in force in a stage's image."""
    found = None
    for stage in lineage(stages, name):
        found = stage.last(keyword) or found
    return found


def inherited_env(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """ENV variables in force in a stage's image."""
    variables: dict[str, str] = {}
    for stage in lineage(stages, name):
        for instruction in stage.all("ENV"):
            variables |= instruction.env()
    return variables


# ---- .dockerignore (the builder's rules: last matching pattern wins, and a
# pattern that matches a folder matches everything in it) ---------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per pattern of a .dockerignore, in order."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        patterns.append((not negated, _pattern_regex(pattern.strip("/"))))
    return patterns


def in_build_context(relative: str, patterns=None) -> bool:
    """Whether the builder sends ``relative`` (a path from the repo root)."""
    patterns = ignore_patterns() if patterns is None else patterns
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for excludes, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = excludes
    return not excluded
