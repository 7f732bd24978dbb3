"""Keep the processes of `mes up` running: restart one that exits, with backoff, until stopped.

honcho's Manager ends the whole set when one process ends, the right call for a Procfile
under a real supervisor and the wrong one for a developer's whole stack: one crashed worker
took the web down with it. This is a thin restart layer on honcho's own pieces (its shell
Popen in a session of its own, its Printer and colours): each process runs `exec <command>`,
so the pid we watch is the process itself, and a process that ends while we are not stopping
is started again after a backoff of 1 s doubling to 30 s. A process that ran for a while
starts over at 1 s. When its leader exits, whatever is left in its process group (a killed
Celery worker's pool children, say) is killed too, so nothing stale outlives it.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from honcho.colour import get_colours
from honcho.compat import ProcessManager
from honcho.printer import Message, Printer
from honcho.process import Popen

SYSTEM = "system"
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL for what is still there (honcho's KILL_WAIT)
SIGNAL_RC = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class Backoff:
    """Say how long to wait before a restart: `first_s` doubling up to `cap_s`."""

    first_s: float = 1.0
    cap_s: float = 30.0
    healthy_after_s: float = 60.0  # a run this long resets the count of attempts

    def delay_s(self, attempt: int) -> float:
        """Return the wait before restart number `attempt` (1 for the first)."""
        return min(self.cap_s, self.first_s * 2 ** max(0, attempt - 1))


@dataclass
class Child:
    """Hold one supervised process: its command, its current run and its restart count."""

    name: str
    command: str
    env: dict[str, str] | None
    cwd: str | None
    colour: str | None
    popen: Popen | None = None
    run: int = 0                   # which start this is, so a late event of an old run is ignored
    started_at: float = 0.0
    attempts: int = 0              # restarts in a row without a healthy run
    restart_at: float | None = None
    returncode: int | None = None
    stop_last: bool = False        # Redis: the others stop first, so none logs it vanishing
    threads: list[threading.Thread] = field(default_factory=list)


def describe_exit(returncode: int) -> str:
    """Return an exit code as people read it: `1`, or `-9 (SIGKILL)`."""
    if returncode < 0:
        try:
            return f"{returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return str(returncode)
    return str(returncode)


class Supervisor:
    """Run named shell commands, print their output with prefixes, restart the ones that exit."""

    def __init__(self, printer: Printer | None = None, *, backoff: Backoff = Backoff(),
                 clock: Callable[[], float] = time.monotonic,
                 stop_grace_s: float = STOP_GRACE_S):
        self.printer = printer or Printer()
        self.printer.width = len(SYSTEM)
        self.backoff = backoff
        self.clock = clock
        self.stop_grace_s = stop_grace_s
        self.returncode = 0
        self._children: dict[str, Child] = {}
        self._colours = get_colours()
        self._events: queue.Queue = queue.Queue()
        self._procs = ProcessManager()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._stop_phase_last = False

    def add(self, name: str, command: str, *, env: dict[str, str] | None = None,
            cwd: str | None = None, stop_last: bool = False) -> None:
        """Add a process; it starts when run() does, and with stop_last it stops after the rest."""
        if name in self._children:
            raise ValueError(f"process names must be unique: {name}")
        self._children[name] = Child(name, command, env, cwd, next(self._colours),
                                     stop_last=stop_last)
        self.printer.width = max(self.printer.width, len(name))

    def pid(self, name: str) -> int | None:
        """Return the pid of a process's current run, if it runs."""
        child = self._children[name]
        return child.popen.pid if child.popen is not None and child.returncode is None else None

    def stop(self, returncode: int = 0) -> None:
        """Ask every process to stop (SIGTERM), then kill what is left after the grace time."""
        for child in self._children.values():
            child.restart_at = None
        if not self._stopping.is_set():
            self.returncode = returncode
            self._stopping.set()

    def run(self, *, handle_signals: bool = True) -> int:
        """Start every process and keep them running until stop(), Ctrl-C or SIGTERM."""
        if handle_signals:
            for signum in SIGNAL_RC:
                signal.signal(signum, self._on_signal)
        for child in self._children.values():
            self._start(child)
        while True:
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(*event)
            if self._stopping.is_set():
                if self._stop_phase():
                    break
                continue
            now = self.clock()
            for child in self._children.values():
                if child.restart_at is not None and now >= child.restart_at:
                    self._start(child)
        for child in self._children.values():
            for thread in child.threads:
                thread.join(1)
        return self.returncode

    # -- the parts ---------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self._stopping.is_set():
            self._kill_all()  # a second Ctrl-C: do not wait for the grace time
            return
        self._system(f"{signal.Signals(signum).name} received, stopping every process")
        self.stop(SIGNAL_RC[signum])

    def _start(self, child: Child) -> None:
        child.run += 1
        child.restart_at = None
        child.returncode = None
        child.started_at = self.clock()
        # exec: the shell becomes the command, so its pid and exit code are the command's.
        child.popen = Popen(f"exec {child.command}", env=child.env, cwd=child.cwd)
        run, popen = child.run, child.popen
        child.threads = [
            threading.Thread(target=self._read, args=(child.name, run, popen), daemon=True,
                             name=f"mes-up-read-{child.name}"),
            threading.Thread(target=self._wait, args=(child.name, run, popen), daemon=True,
                             name=f"mes-up-wait-{child.name}")]
        for thread in child.threads:
            thread.start()
        self._system(f"{child.name} started (pid={popen.pid})")

    def _read(self, name: str, run: int, popen: Popen) -> None:
        for line in iter(popen.stdout.readline, b""):
            self._events.put(("line", name, run, line))
        popen.stdout.close()

    def _wait(self, name: str, run: int, popen: Popen) -> None:
        returncode = popen.wait()
        # The leader is gone; anything left in its group (orphaned pool children) goes too,
        # which also closes the output pipe they held.
        self._procs.kill(popen.pid)
        self._events.put(("exit", name, run, returncode))

    def _handle(self, kind: str, name: str, run: int, data) -> None:
        child = self._children[name]
        if kind == "line":
            self._print(child, data)
            return
        if run != child.run:
            return
        child.returncode = data
        if self._stopping.is_set():
            self._system(f"{name} stopped (exit code {describe_exit(data)})")
            return
        ran_s = self.clock() - child.started_at
        child.attempts = 1 if ran_s >= self.backoff.healthy_after_s else child.attempts + 1
        delay = self.backoff.delay_s(child.attempts)
        child.restart_at = self.clock() + delay
        words = (f"{name} exited unexpectedly (exit code {describe_exit(data)}, attempt "
                 f"{child.attempts}); restarting in {delay:g}s")
        if delay >= self.backoff.cap_s:
            words += f"; it keeps exiting, retrying every {self.backoff.cap_s:g}s (see its lines above)"
        self._system(words)

    def _stop_phase(self) -> bool:
        """Stop the others, then the stop_last ones, each with a grace time; True when done."""
        for last in (False, True):
            running = [child for child in self._children.values()
                       if child.stop_last is last and child.returncode is None]
            if not running:
                continue
            if self._stop_deadline is None or self._stop_phase_last is not last:
                self._stop_phase_last = last
                self._stop_deadline = self.clock() + self.stop_grace_s
                for child in running:
                    self._system(f"sending SIGTERM to {child.name} (pid {child.popen.pid})")
                    self._procs.terminate(child.popen.pid)
            elif self.clock() >= self._stop_deadline:
                self._kill(running)
                self._stop_deadline = self.clock() + self.stop_grace_s
            return False
        return True

    def _kill_all(self) -> None:
        self._kill([child for child in self._children.values() if child.returncode is None])

    def _kill(self, children: list[Child]) -> None:
        for child in children:
            self._system(f"sending SIGKILL to {child.name} (pid {child.popen.pid})")
            self._procs.kill(child.popen.pid)

    def _print(self, child: Child, data: bytes) -> None:
        self.printer.write(Message(type="line", data=data, time=datetime.now(), name=child.name,
                                   colour=child.colour))

    def _system(self, text: str) -> None:
        self.printer.write(Message(type="line", data=text + "\n", time=datetime.now(),
                                   name=SYSTEM, colour=None))

