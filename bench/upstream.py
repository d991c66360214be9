"""nginx on 127.0.0.1, from a config in a scratch folder: the canned upstream (target a) and a plain reverse
proxy in front of it (target b), each one worker, not daemonized, stopped by pid.

The canned upstream answers Replicate's create with a valid `starting` prediction (201) and a read by id with a
`succeeded` one, as fast as nginx can: every id is nginx's `$request_id`, so each create is a new prediction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.processes import child, find_program
from tests.servers import free_port

UPSTREAM_VERSION = "e1" * 32  # what the gateway's catalog rewrites the public version to
_URLS = (
    '"urls":{"get":"http://127.0.0.1:$server_port/v1/predictions/$prediction",'
    '"cancel":"http://127.0.0.1:$server_port/v1/predictions/$prediction/cancel",'
    '"web":"http://127.0.0.1:$server_port/p/$prediction"}'
)
_COMMON = (
    f'"model":"stability-ai/stable-diffusion-inpainting","version":"{UPSTREAM_VERSION}",'
    '"input":{"prompt":"a cat"},"source":"api","data_removed":false,"created_at":"$time_iso8601",'
)
STARTING = '{"id":"$prediction",' + _COMMON + '"status":"starting","output":null,"error":null,"logs":"",' + _URLS + "}"
SUCCEEDED = (
    '{"id":"$prediction",' + _COMMON + '"status":"succeeded","started_at":"$time_iso8601","completed_at":"$time_iso8601",'
    '"output":["http://127.0.0.1:$server_port/files/$prediction.png"],"error":null,"logs":"done",'
    '"metrics":{"predict_time":0.5,"total_time":0.6},' + _URLS + "}"
)

_CANNED_SERVER = f"""
    server {{
        listen 127.0.0.1:{{port}} reuseport backlog=4096;
        default_type application/json;
        location = /v1/predictions {{
            set $prediction $request_id;
            return 201 '{STARTING}';
        }}
        location ~ ^/v1/predictions/(?<prediction>[A-Za-z0-9]+)$ {{
            return 200 '{SUCCEEDED}';
        }}
        location / {{
            return 404 '{{"detail":"Not found."}}';
        }}
    }}
"""

_PROXY_SERVER = """
    upstream canned {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://canned;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def _config(scratch: Path, servers: str) -> str:
    temp = " ".join(f"{kind}_temp_path {scratch / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
daemon off;
worker_processes 1;
pid {scratch / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    {temp}
    {servers}
}}
"""


@contextlib.contextmanager
def nginx(scratch: Path, servers: str, port: int) -> Iterator[int]:
    """One nginx serving `servers` (listening on `port`) until the block exits; yields its master's pid."""
    program = find_program("nginx")
    if program is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "nginx.conf").write_text(_config(scratch, servers))
    command = [program, "-p", str(scratch), "-c", str(scratch / "nginx.conf"), "-e", "stderr"]
    with child(command, scratch / "nginx.log", port) as pid:
        yield pid


@contextlib.contextmanager
def canned_upstream(scratch: Path) -> Iterator[tuple[str, int]]:
    """Target (a): yields its root URL and pid."""
    port = free_port()
    with nginx(scratch / "canned", _CANNED_SERVER.replace("{port}", str(port)), port) as pid:
        yield f"http://127.0.0.1:{port}", pid


@contextlib.contextmanager
def reverse_proxy(scratch: Path, upstream: str) -> Iterator[tuple[str, int]]:
    """Target (b), in front of the canned upstream: yields its root URL and pid."""
    port = free_port()
    servers = _PROXY_SERVER.format(upstream=upstream.rsplit(":", 1)[1], port=port)
    with nginx(scratch / "proxy", servers, port) as pid:
        yield f"http://127.0.0.1:{port}", pid
