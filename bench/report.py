"""The results table as text for the terminal and as markdown and JSON in the output folder."""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from bench.table import TARGETS, Results, Row

_COLUMNS = (
    "scenario",
    "target",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "added p50 ms",
    "x (c)",
    "x (e)",
    "Redis cmds/req",
    "round trips/req",
    "RSS MiB before→after",
    "CPU s/1k req",
    "errors",
    "note",
)
NOTE = (
    "Numbers are noisy: the machine runs other work at the same time; ratios between targets of one run are what "
    "matter. 'added' is over (a), the canned upstream straight. Redis figures are the gateway's only."
)


def cells(results: Results, row: Row) -> list[str]:
    """One row's figures, formatted; a row not measured says why."""
    if row.skipped:
        return [row.scenario, TARGETS[row.target], *([""] * (len(_COLUMNS) - 3)), f"skipped: {row.skipped}"]

    def number(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    def ratio(target: str) -> str:
        value = results.ratio(row, target) if row.target != target else None
        return "" if value is None else f"{value:.2f}x"

    rss = "" if row.rss_before is None or row.rss_after is None else f"{row.rss_before / 2**20:.0f}→{row.rss_after / 2**20:.0f}"
    return [
        row.scenario,
        TARGETS[row.target],
        f"{row.requests:,}",
        number(row.rate, 0),
        number(row.p50_ms, 2),
        number(row.p99_ms, 2),
        number(results.added(row), 2) if row.target != "a" else "",
        ratio("c"),
        ratio("e"),
        number(row.redis_commands, 2),
        number(row.round_trips, 2),
        rss,
        number(row.cpu_per_1k, 3),
        str(row.errors),
        row.note,
    ]


def footer(results: Results) -> list[str]:
    lines = []
    for verdict in results.verdicts():
        state = {True: "met", False: "NOT MET", None: "not measured"}[verdict.met]
        lines.append(f"{state:>12}  {verdict.target}: {verdict.measured}")
    return lines


def text(results: Results) -> str:
    table = [list(_COLUMNS)] + [cells(results, row) for row in results.rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1] for line in table]
    return "\n".join([*lines, "", "Targets:", *footer(results), "", NOTE])


def markdown(results: Results, command: str) -> str:
    def line(values: list[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    rows = [line(list(_COLUMNS)), line(["---"] * len(_COLUMNS))] + [line(cells(results, row)) for row in results.rows]
    targets = [f"- {entry.strip()}" for entry in footer(results)]
    heading = f"`{command}`, {_when()}"
    return "\n".join([heading, "", *rows, "", "Targets:", "", *targets, "", NOTE, ""])


def write(results: Results, folder: Path, command: str, stem: str) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.json` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / f"{stem}.md", folder / f"{stem}.json"
    md.write_text(markdown(results, command))
    document = {
        "command": command,
        "when": _when(),
        "rows": [dataclasses.asdict(row) for row in results.rows],
        "targets": [dataclasses.asdict(verdict) for verdict in results.verdicts()],
    }
    js.write_text(json.dumps(document, indent=1) + "\n")
    return md, js


def _when() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
