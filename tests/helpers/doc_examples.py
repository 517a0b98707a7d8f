"""Shell examples of the documentation, extracted to be run against a live server.

A fenced ``bash``/``sh``/``console`` block is run when the line before it is
``<!-- docs-test: run -->``, and left alone, with a reason a reader of the source sees,
after ``<!-- docs-test: skip: REASON -->``. In a ``console`` block the lines after a ``$``
command are its expected output: each must appear in order (whitespace runs compare equal,
``...`` matches anything, and a line that is only ``...`` skips output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^<!-- docs-test: (run|skip: (?P<reason>.+?)) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELLS = {"bash", "sh", "console"}
# What makes a block talk to a server: its addresses or a client command of the CLI.
CLIENT_COMMAND = re.compile(r"latentserve (sample|models|interpolate|reload|eval-samples)\b")
TALKS_TO_SERVER = re.compile(rf"(127\.0\.0\.1|localhost):(8000|50051)|{CLIENT_COMMAND.pattern}")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    mode: str | None  # "run", "skip" or None (unmarked)
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def shell_blocks(page: Path) -> list[Block]:
    """Every fenced shell block of a Markdown page, with the marker before it (if any)."""
    lines = page.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if opening.group(1) in SHELLS:
            marker = MARKER.match(lines[i - 1]) if i else None
            mode = None if marker is None else marker.group(1).split(":")[0]
            reason = (marker.group("reason") or "") if marker else ""
            text = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(page, i + 1, opening.group(1), text, mode, reason))
        i = end + 1
    return blocks


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of each ``$`` command of a console block; a command
    continues over lines that end with a backslash."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if steps:
                steps[-1][1].append(lines[i])
            i += 1
            continue
        command = [lines[i][2:]]
        while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        steps.append(("\n".join(command), []))
        i += 1
    return steps


def _pattern(expected: str) -> re.Pattern[str]:
    parts = [r"\s+".join(map(re.escape, p.split())) for p in expected.strip().split("...")]
    return re.compile(".*".join(parts))


def missing_output(expected: list[str], output: str) -> str | None:
    """The first expected line not found, in order, in ``output`` (None when all are)."""
    actual = output.splitlines()
    position = 0
    for line in expected:
        if not line.strip() or line.strip() == "...":
            continue
        pattern = _pattern(line)
        while position < len(actual) and not pattern.search(actual[position]):
            position += 1
        if position == len(actual):
            return line
        position += 1
    return None


def localize(text: str, http_port: int, grpc_port: int) -> str:
    """The documented default addresses replaced by the test server's. A client command
    without ``--url`` would reach whatever listens on the default port, so it is refused."""
    for command in re.sub(r"\\\n", " ", text).splitlines():
        if CLIENT_COMMAND.search(command) and "--url" not in command:
            raise ValueError(f"a client command without --url: {command.strip()}")
    text = re.sub(r"(127\.0\.0\.1|localhost):8000", f"127.0.0.1:{http_port}", text)
    return re.sub(r"(127\.0\.0\.1|localhost):50051", f"127.0.0.1:{grpc_port}", text)
