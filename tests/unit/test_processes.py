"""Pid files and the clean-up of left-behind children, over real processes: only a process whose command line
shows it is the recorded child is stopped, with its whole process group."""

import subprocess
import sys
import time
from pathlib import Path

from gateway import processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)  # left-behind-child"]


def _sleeper() -> subprocess.Popen[bytes]:
    """A child that has exec'd its command (until then /proc shows the parent's command line)."""
    child = subprocess.Popen(SLEEPER, start_new_session=True)
    deadline = time.monotonic() + 10
    while b"left-behind-child" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return child


def test_a_recorded_child_is_stopped_and_its_pid_file_removed(tmp_path: Path) -> None:
    child = _sleeper()
    pid_file = tmp_path / "child.pid"
    processes.record(pid_file, child.pid)
    try:
        assert pid_file.stat().st_mode & 0o777 == 0o600
        assert processes.reclaim(pid_file, ["left-behind-child"], grace=2) == child.pid
        assert child.wait(timeout=5) is not None and not pid_file.exists()
    finally:
        child.kill()
        child.wait()


def test_an_unrelated_process_under_a_recorded_pid_is_left_alone(tmp_path: Path) -> None:
    unrelated = _sleeper()
    pid_file = tmp_path / "child.pid"
    processes.record(pid_file, unrelated.pid)
    try:
        assert processes.reclaim(pid_file, ["cog.server.http"], grace=2) is None
        assert processes.alive(unrelated.pid) and not pid_file.exists()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_a_pid_file_of_a_finished_process_or_garbage_is_ignored(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    pid_file = tmp_path / "child.pid"
    processes.record(pid_file, finished.pid)
    assert processes.reclaim(pid_file, [""]) is None
    pid_file.write_text("not a pid")
    assert processes.reclaim(pid_file, [""]) is None
    assert processes.reclaim(tmp_path / "missing.pid", [""]) is None
