"""Start and stop real processes for integration and fault tests."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from mes.stack import free_port
from mes.bench.processes import Proc, start_redis, wait_until  # noqa: F401 - re-exported for tests

ROOT = Path(__file__).resolve().parents[1]


def start_engine(log_dir: Path, env: dict[str, str], *args: str) -> tuple[Proc, str]:
    """Start `mes engine --simulated` on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "mes.engine", "--simulated", "--port", str(port), *args]
    proc = Proc(f"engine-{port}", command, env, log_dir, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url + "/api/version", timeout=1).ok, 20, "engine", proc)
    return proc, url
