"""`python -m bench`: every target and scenario side by side on 127.0.0.1, one table, the targets judged.

    python -m bench [--quick] [--only create,get,c,f] [--duration 10] [--output bench/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import gateway_target, litellm_target, report
from bench.runs import Run
from bench.table import TARGETS, Results

SCENARIOS = ("create", "get", "fixed-rate", "soak", "workers", "wait", "waits", "streams", "webhooks")


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does: the full run's, or the smoke run's."""

    seconds: float
    warm_seconds: float
    soak_requests: int
    waits: int
    wait_run_seconds: float  # how long the held waits' predictions run upstream
    streams: int
    webhooks: int
    idle_seconds: float  # how long the gateway's background Redis traffic is measured before each run
    settle_seconds: float  # how long open streams are left to settle before their memory is read


FULL = Sizes(
    seconds=10, warm_seconds=2, soak_requests=200_000, waits=5000, wait_run_seconds=30, streams=2000, webhooks=10_000,
    idle_seconds=1, settle_seconds=5,
)
QUICK = Sizes(
    seconds=1, warm_seconds=0, soak_requests=300, waits=40, wait_run_seconds=2, streams=40, webhooks=40,
    idle_seconds=0.3, settle_seconds=1,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes; LiteLLM only if already installed")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios ({', '.join(SCENARIOS)}) and/or targets ({', '.join(TARGETS)}); default all",
    )
    parser.add_argument("--duration", type=float, help="seconds of each measured run (default 10; --quick 1)")
    parser.add_argument("--rate", type=float, default=300, help="the open loop's requests per second (default 300)")
    for name, meaning in (
        ("soak-requests", "creates of the soak"),
        ("waits", "Prefer: wait requests held at once"),
        ("streams", "event streams held open"),
        ("webhooks", "terminal webhooks delivered"),
    ):
        parser.add_argument(f"--{name}", type=int, help=f"{meaning} (default {getattr(FULL, name.replace('-', '_')):,})")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results", help="where latest.md/.json go")
    args = parser.parse_args(argv)
    unknown = {name for name in args.only.split(",") if name} - set(SCENARIOS) - set(TARGETS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> Results:
    args = parse(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    given = {"seconds": args.duration, "soak_requests": args.soak_requests, "waits": args.waits}
    given |= {"streams": args.streams, "webhooks": args.webhooks}
    sizes = dataclasses.replace(sizes, **{name: value for name, value in given.items() if value})
    only = {name for name in args.only.split(",") if name}
    _raise_file_limit(2 * max(sizes.waits, sizes.streams) + 4096)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as scratch:
        run = Run(Path(scratch), sizes, args.rate, only, _litellm_problem(args.quick), _workers_problem())
        results = run.all()
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    stem = "quick" if args.quick else "latest"
    written = report.write(results, args.output, command.strip(), stem)
    print(report.text(results))
    print("\nwritten: " + ", ".join(str(path) for path in written))
    return results


def _litellm_problem(quick: bool) -> str | None:
    """Why target (e) cannot run, or None; installs it on first use, except in a smoke run."""
    if litellm_target.installed():
        return None
    if quick:
        return f"not installed in {litellm_target.VENV} (a smoke run does not install it)"
    print(f"installing litellm[proxy]=={litellm_target.VERSION} into {litellm_target.VENV} …", file=sys.stderr)
    return litellm_target.install()


def _workers_problem() -> str | None:
    return None if gateway_target.supports_workers() else "this gateway's `serve` has no --workers option"


def _raise_file_limit(wanted: int) -> None:
    """Thousands of held connections need as many descriptors, here and in the children that inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, wanted)), hard))


if __name__ == "__main__":
    main()
