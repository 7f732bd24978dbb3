"""The supervisor behind `mes up`: restarts with backoff, leaves the rest alone, stops cleanly."""

from __future__ import annotations

import io
import os
import re
import threading

import psutil
import pytest
from honcho.printer import Printer

from mes.bench.processes import wait_until
from mes.cli.supervisor import Backoff, Supervisor, describe_exit

FAST = Backoff(first_s=0.05, cap_s=0.2, healthy_after_s=60)


def test_backoff_doubles_from_one_second_to_thirty():
    assert [Backoff().delay_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_exit_codes_read_as_people_say_them():
    assert (describe_exit(3), describe_exit(-9), describe_exit(-15)) == (
        "3", "-9 (SIGKILL)", "-15 (SIGTERM)")


def gone(pid: int) -> bool:
    """Tell whether a process is dead (a zombie waiting for init to reap it counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Running:
    """Run a supervisor in a thread (no signal handlers there) and read what it prints."""

    def __init__(self, supervisor: Supervisor, out: io.StringIO):
        self.supervisor, self.out = supervisor, out
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(
            supervisor.run(handle_signals=False)), daemon=True)
        self.thread.start()

    def text(self) -> str:
        return self.out.getvalue()

    def wait_for(self, pattern: str, what: str) -> re.Match:
        wait_until(lambda: re.search(pattern, self.text()), 20, what)
        return re.search(pattern, self.text())

    def stop(self) -> int:
        self.supervisor.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), self.text()
        return self.result[0]


@pytest.fixture
def make():
    runs: list[Running] = []

    def start(commands: dict[str, str], last: tuple[str, ...] = (), **options) -> Running:
        out = io.StringIO()
        supervisor = Supervisor(Printer(out), backoff=FAST, **options)
        for name, command in commands.items():
            supervisor.add(name, command, stop_last=name in last)
        runs.append(Running(supervisor, out))
        return runs[-1]
    yield start
    for run in runs:
        if run.thread.is_alive():
            run.stop()


def test_a_crashing_process_is_retried_at_the_cap_and_the_rest_stays_up(make):
    run = make({"crasher": "sh -c 'echo boom; exit 3'", "steady": "sleep 60"})
    run.wait_for(r"crasher exited unexpectedly \(exit code 3, attempt 5\)", "five restarts")
    assert run.stop() == 0
    text = run.text()
    delays = re.findall(r"crasher exited unexpectedly \(exit code 3, attempt (\d+)\); "
                        r"restarting in ([\d.]+)s", text)
    assert delays[:5] == [("1", "0.05"), ("2", "0.1"), ("3", "0.2"), ("4", "0.2"), ("5", "0.2")]
    assert "it keeps exiting, retrying every 0.2s" in text
    assert text.count("crasher | boom") >= 5
    # The steady process started once and was only stopped at the end, by SIGTERM.
    assert text.count("steady started") == 1
    assert "steady stopped (exit code -15 (SIGTERM))" in text
    assert "steady exited unexpectedly" not in text


def test_a_killed_leader_takes_its_stragglers_with_it_and_comes_back(make):
    # The leader is sh; its child sleep stays in the group, as a Celery pool child would.
    run = make({"leader": "sh -c 'sleep 60 & echo child=$!; wait'"})
    first = int(run.wait_for(r"leader started \(pid=(\d+)\)", "leader").group(1))
    child = int(run.wait_for(r"child=(\d+)", "its child").group(1))
    os.kill(first, 9)
    run.wait_for(r"leader exited unexpectedly \(exit code -9 \(SIGKILL\), attempt 1\)", "restart")
    wait_until(lambda: len(re.findall(r"leader started \(pid=(\d+)\)", run.text())) == 2, 20,
               "the second start")
    assert gone(child)
    assert run.stop() == 0


def test_stop_kills_what_ignores_sigterm(make):
    run = make({"stubborn": "sh -c 'trap \"\" TERM; echo ready; sleep 60'"}, stop_grace_s=0.3)
    run.wait_for(r"stubborn \| ready", "ready")
    assert run.stop() == 0
    assert "sending SIGTERM to stubborn" in run.text()
    assert "sending SIGKILL to stubborn" in run.text()
    assert "stubborn exited unexpectedly" not in run.text()


def test_a_stop_last_process_stops_after_the_others(make):
    run = make({"redis": "sleep 60", "web": "sleep 60"}, last=("redis",))
    run.wait_for(r"web started", "web")
    run.wait_for(r"redis started", "redis")
    assert run.stop() == 0
    text = run.text()
    assert text.index("web stopped") < text.index("sending SIGTERM to redis")
