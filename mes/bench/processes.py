"""Run local processes for tests and benchmarks: start, wait for readiness, stop by group."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import redis as redis_lib

from mes.stack import find_redis_server, free_port


class Proc:
    """Run one command in its own process group, logging to a file."""

    def __init__(self, name: str, command: str | list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.command = command
        args = shlex.split(command) if isinstance(command, str) else command
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd or Path.cwd(), stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        """Return the process id (also its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Tell whether the process still runs."""
        return self.popen.poll() is None

    def log(self, tail: int | None = 4000) -> str:
        """Return the end of the process's output (all of it with tail=None)."""
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
        """Signal the whole process group, then kill it if it does not exit in time."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, proc: Proc | None = None) -> None:
    """Poll a readiness check (process start-up only, never a test assertion on time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {timeout_s}s" + (f":\n{proc.log()}" if proc else ""))


def start_redis(log_dir: Path, *, appendonly: bool = False, port: int | None = None) -> tuple[Proc, str]:
    """Start a private redis-server on a free port."""
    port = port or free_port()
    binary = find_redis_server()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes" if appendonly else "no", "--dir", str(log_dir)]
    proc = Proc(f"redis-{port}", command, dict(os.environ), log_dir)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_lib.Redis.from_url(url).ping(), 15, "redis-server", proc)
    return proc, url
