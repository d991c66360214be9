"""The benchmark harness's smoke run (`python -m bench --quick`): every row and figure of its table is there, so
that the harness cannot rot. Nothing here judges a timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.processes import find_program

ROOT = Path(__file__).parents[2]
# Rows of every scenario on the canned upstream, by target; the emulator's scenarios run on the gateway alone.
EXPECTED = {
    "create": {"a", "b", "c", "d", "e", "f", "f-warning", "f-workers2"},
    "get": {"a", "b", "c", "d", "e", "f", "f-warning"},
    "create at 100/s": {"a", "c", "d", "e", "f"},
    "soak": {"f"},
    "create, Prefer: wait, 1 s model": {"f"},
    "concurrent waits": {"f"},
    "open streams": {"f"},
    "terminal webhooks": {"f"},
}
LOAD_FIGURES = ("rate", "p50_ms", "p99_ms", "cpu_per_1k", "rss_before", "rss_after")
PASSTHROUGH_ROWS = {"create", "get", "create at 100/s"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = [name for name in ("nginx", "wrk") if find_program(name) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install nginx-light wrk)")
    scratch = tmp_path_factory.mktemp("bench")
    # An empty cache: LiteLLM's row is skipped (a smoke run never installs it), whatever this machine has.
    env = {**os.environ, "XDG_CACHE_HOME": str(scratch / "cache")}
    command = [sys.executable, "-m", "bench", "--quick", "--rate", "100", "--output", str(scratch)]
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    document: dict[str, Any] = json.loads((scratch / "quick.json").read_text())
    document["stdout"] = finished.stdout
    document["markdown"] = (scratch / "quick.md").read_text()
    return document


def test_the_table_has_a_row_for_every_scenario_and_target(smoke_run: dict[str, Any]) -> None:
    rows = {(row["scenario"], row["target"]) for row in smoke_run["rows"]}
    assert rows == {(scenario, target) for scenario, targets in EXPECTED.items() for target in targets}


def test_a_row_left_out_says_why(smoke_run: dict[str, Any]) -> None:
    skipped = {row["target"]: row["skipped"] for row in smoke_run["rows"] if row["skipped"]}
    assert "not installed" in skipped.pop("e")
    assert set(skipped) <= {"f-workers2"}, skipped


def test_every_measured_load_row_has_its_figures(smoke_run: dict[str, Any]) -> None:
    for row in smoke_run["rows"]:
        if row["skipped"] or row["scenario"] not in PASSTHROUGH_ROWS | {"soak", "create, Prefer: wait, 1 s model"}:
            continue
        assert row["requests"] > 0, row
        assert all(row[figure] is not None for figure in LOAD_FIGURES), row


def test_the_gateways_rows_carry_their_redis_cost(smoke_run: dict[str, Any]) -> None:
    for row in smoke_run["rows"]:
        if row["target"].startswith("f") and row["scenario"] in PASSTHROUGH_ROWS and not row["skipped"]:
            assert row["redis_commands"] > 0 and row["round_trips"] > 0, row
            assert row["redis_calls"], row
        elif row["target"] in "abcde":
            assert row["redis_commands"] is None, row


def test_the_emulated_scenarios_report_memory_and_latency(smoke_run: dict[str, Any]) -> None:
    rows = {row["scenario"]: row for row in smoke_run["rows"]}
    for scenario in ("concurrent waits", "terminal webhooks"):
        assert rows[scenario]["requests"] > 0 and rows[scenario]["max_ms"] is not None, rows[scenario]
    for scenario in ("concurrent waits", "open streams", "terminal webhooks"):
        assert rows[scenario]["rss_after"] > 0, rows[scenario]
    assert "KiB per stream" in rows["open streams"]["note"]


def test_every_target_of_the_issue_is_judged(smoke_run: dict[str, Any]) -> None:
    verdicts = smoke_run["targets"]
    assert len(verdicts) == 10
    assert all(verdict["met"] in (True, False, None) and verdict["measured"] for verdict in verdicts)
    for verdict in verdicts:
        assert verdict["target"] in smoke_run["stdout"] and verdict["target"] in smoke_run["markdown"]
