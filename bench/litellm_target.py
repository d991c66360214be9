"""Target (e): LiteLLM's proxy, the Python gateway a user would otherwise pick, with a pass-through endpoint to
the canned upstream guarded by its master key. It runs from a virtualenv of its own under the user's cache
(created on first use), so that its many dependencies never meet the gateway's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.gateway_target import UPSTREAM_TOKEN
from bench.processes import child
from tests.servers import free_port

VERSION = "1.108.7"  # the release the first measurement used
MASTER_KEY = "sk-bench-master-key"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gateway-bench" / "litellm-venv"
_CONFIG = """
general_settings:
  master_key: {master_key}
  pass_through_endpoints:
    - path: "/v1/predictions"
      target: "{upstream}/v1/predictions"
      headers:
        Authorization: "Bearer {token}"
      include_subpath: true
      auth: true
"""


def installed() -> bool:
    return (VENV / "bin" / "litellm").exists()


def install() -> str | None:
    """Create the virtualenv with `litellm[proxy]`; None when done, else why it could not be."""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=300)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={VERSION}"]
        subprocess.run(pip, check=True, capture_output=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return f"litellm[proxy]=={VERSION} could not be installed into {VENV}: {exc}"
    return None


@contextlib.contextmanager
def litellm(scratch: Path, upstream: str) -> Iterator[tuple[str, int]]:
    """The proxy, one worker, until the block exits: yields its root URL and pid."""
    scratch.mkdir(parents=True, exist_ok=True)
    config = scratch / "litellm.yaml"
    config.write_text(_CONFIG.format(master_key=MASTER_KEY, upstream=upstream, token=UPSTREAM_TOKEN))
    port = free_port()
    # Its cost map ships in the package: nothing is fetched from outside.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    command = [str(VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    with child(command, scratch / "litellm.log", port, env=env, timeout=180) as pid:
        yield f"http://127.0.0.1:{port}", pid
