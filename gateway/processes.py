"""Pid files of the child processes the gateway starts, and the clean-up of the ones a killed gateway left behind.

A gateway killed with SIGKILL cannot stop its children (each runs in a session of its own, so a signal to the
gateway's group does not reach them either); they keep their ports and files. The next start reads the pid
file and stops the recorded process group, but only if the process's command line still shows it is that
child: a pid reused by an unrelated process is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

_POLL_SECONDS = 0.05


def record(path: Path, pid: int) -> None:
    """Write `pid` to `path`, readable by the owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{pid}\n")


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)


def reclaim(path: Path, markers: Sequence[str], grace: float = 5.0) -> int | None:
    """Stop the process group recorded in `path` if its leader is alive and its command line contains every
    marker: SIGTERM, then SIGKILL after `grace` seconds. Returns the pid stopped, else None."""
    pid = _recorded(path)
    if pid is None or pid == os.getpid() or not _matches(pid, markers):
        forget(path)
        return None
    group = _leads_group(pid)
    _signal(pid, group, signal.SIGTERM)
    _wait_gone(pid, grace)
    _signal(pid, group, signal.SIGKILL)  # also the group's other members, e.g. a model worker
    _wait_gone(pid, grace)
    forget(path)
    return pid


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _recorded(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _matches(pid: int, markers: Sequence[str]) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return bool(command) and all(marker in command for marker in markers)


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal(pid: int, group: bool, sig: signal.Signals) -> None:
    """Signal the process group `pid` leads (members outlive their leader), or `pid` alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
