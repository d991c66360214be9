"""A reader of the top-level Dockerfile for the deployment tests: stages, their instructions, and where a path
inside an image came from."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, ...
    arguments: str  # the rest of the instruction, continuation lines joined


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def copies(self) -> list[Copy]:
        """The stage's COPY instructions, destinations made absolute against the WORKDIR in force."""
        found, workdir = [], "/"
        for instruction in self.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = posixpath.join(workdir, instruction.arguments)
            elif instruction.keyword == "COPY":
                found.append(Copy.parse(instruction.arguments, workdir))
        return found

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                values[name] = value
        return values


@dataclass(frozen=True)
class Copy:
    sources: list[str]
    destination: str  # absolute
    from_stage: str | None
    into_directory: bool  # the sources go into the destination (several of them, or a destination ending in /)

    @classmethod
    def parse(cls, arguments: str, workdir: str) -> Copy:
        words = shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        destination = posixpath.normpath(posixpath.join(workdir, paths[-1]))
        return cls(paths[:-1], destination, from_stage, len(paths) > 2 or paths[-1].endswith("/"))

    def origin(self, image_path: str) -> Path | None:
        """The file of the build context that `image_path` was copied from, if this COPY put it there."""
        if self.from_stage is not None or self.into_directory:
            return None
        if image_path == self.destination:
            return ROOT / self.sources[0]
        if image_path.startswith(self.destination + "/"):
            return ROOT / self.sources[0] / image_path.removeprefix(self.destination + "/")
        return None


def _lines(text: str) -> list[str]:
    """Logical lines: comments and blank lines dropped, continuations joined."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return logical


def stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The build stages by name, in order (the last one is what `docker build` builds without --target)."""
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            current = found[name.strip()] = Stage(name.strip(), base.strip())
        elif current is not None:
            current.instructions.append(Instruction(keyword, arguments.strip()))
    return found


def global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults."""
    values = {}
    for line in _lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            break
        if keyword.upper() == "ARG":
            name, _, default = arguments.partition("=")
            values[name] = default
    return values
