"""The CLI draws tables for people at a terminal and prints today's JSON for scripts."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest

from mes.cli import build_parser
from mes.cli.common import Context
from mes.cli.jobs import get_job, list_jobs
from mes.cli.keys import list_keys
from mes.cli.models import models_command
from mes.cli.status import show_status

MODELS = [
    {"id": "smollm2:135m", "family": "smollm", "queue": "mes.smollm", "loaded": True,
     "available_on_backend": True, "max_concurrency": 2, "running": 1, "queued": 3,
     "json_mode": "native", "keep_alive": "30m", "warmup": None,
     "last_used_at": "2025-01-01T00:00:00.000Z"},
    {"id": "ghost:1b", "family": "phi", "queue": "mes.phi", "loaded": False,
     "available_on_backend": False, "max_concurrency": 1, "running": 0, "queued": 0,
     "json_mode": "native", "keep_alive": "5m", "warmup": None, "last_used_at": None},
]
STATUS = {
    "redis": "ok", "backend": {"status": "ok", "version": "0.5.7"},
    "queues": {"mes.smollm": {"family": "smollm", "depth": 4,
                              "lanes": {"interactive": 3, "batch": 1}, "concurrency": 2,
                              "workers": 1, "queued": 4, "running": 1},
               "mes.phi": {"family": "phi", "depth": 0, "lanes": {"interactive": 0, "batch": 0},
                           "concurrency": 1, "workers": 0, "queued": 0, "running": 0}},
    "workers": {"smollm": 1, "phi": 0}, "models": {},
    "loaded_models": [{"name": "smollm2:135m"}], "missing_models": ["ghost:1b"],
    "breaker": {"state": "closed", "failures": 0, "retry_in_s": 0},
    "counters": {"jobs_submitted": 9, "jobs_succeeded": 7},
}
DONE = {"id": "job_1", "kind": "inference", "status": "succeeded", "model": "smollm2:135m",
        "priority": "interactive", "created_at": "2025-01-01T00:00:00.000Z",
        "started_at": "2025-01-01T00:00:01.000Z", "finished_at": "2025-01-01T00:00:03.500Z",
        "attempts": 1, "queue_position": None, "error": None, "metadata": {},
        "result": {"text": "Paris is the capital.", "usage": {"prompt_tokens": 5,
                                                                "completion_tokens": 6}}}
FAILED = {**DONE, "id": "job_2", "status": "failed", "result": None,
          "error": {"code": "timeout", "message": "the job ran past its deadline"}}
PULLING = {**DONE, "id": "op_1", "kind": "pull", "status": "running", "result": None,
           "finished_at": None, "progress": {"status": "pulling 8eeb52dfb3bb", "completed": 40,
                                             "total": 100, "lines": ["pulling manifest"]}}
KEYS = [{"name": "ci", "scopes": ["jobs", "models"], "created_at": "2025-01-01T00:00:00.000Z",
         "revoked_at": None, "hash_prefix": "ab12cd34"}]


class Terminal(io.StringIO):
    """Stand for a terminal: rich and the commands ask isatty()."""

    def isatty(self):
        return True


class FakeClient:
    """Answer the CLI's calls from fixed data."""

    def models(self):
        return MODELS

    def status(self):
        return STATUS

    def get(self, job_id, wait_s=0):
        return {"job_1": DONE, "job_2": FAILED, "op_1": PULLING}[job_id]

    def list_jobs(self, **filters):
        return {"jobs": [DONE, FAILED], "next_cursor": "1735689600000"}


class FakeKeys:
    def list(self):
        return [SimpleNamespace(as_dict=lambda: KEYS[0])]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich reads the width from here, as from a terminal


def run(command, argv, *, terminal, store=None):
    """Run a command; return its exit code and stdout, without colour codes."""
    args, _ = build_parser().parse_known_args(argv)
    out = Terminal() if terminal else io.StringIO()
    context = Context(environ={}, stdout=out, stderr=io.StringIO())
    code = command(args, store if store is not None else FakeClient(), context)
    return code, re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())


CASES = [
    (models_command, ["models"], {"models": MODELS}),
    (show_status, ["status"], STATUS),
    (list_jobs, ["jobs", "list"], FakeClient().list_jobs()),
    (get_job, ["jobs", "get", "job_1"], DONE),
]


@pytest.mark.parametrize("command,argv,expected", CASES)
def test_json_when_stdout_is_not_a_terminal_or_with_json(command, argv, expected):
    assert run(command, argv, terminal=False) == (0, json.dumps(expected, indent=2) + "\n")
    code, out = run(command, [*argv, "--json"], terminal=True)
    assert (code, json.loads(out)) == (0, expected)


def test_models_table_marks_what_the_backend_lacks():
    code, out = run(models_command, ["models"], terminal=True)
    header, smollm, ghost = out.splitlines()[:3]
    assert code == 0 and header.split()[:4] == ["ID", "FAMILY", "QUEUE", "ON"]
    assert smollm.split()[:5] == ["smollm2:135m", "smollm", "mes.smollm", "yes", "yes"]
    assert ghost.split()[:5] == ["ghost:1b", "phi", "mes.phi", "no", "no"]
    assert "The backend lacks 1 model(s): ghost:1b" in out and "mes models pull ID" in out


def test_status_summary_names_queues_workers_and_missing_models():
    code, out = run(show_status, ["status"], terminal=True)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "redis ok · backend ok 0.5.7 · breaker closed"
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["mes.smollm"] == ["mes.smollm", "smollm", "1", "2", "3", "1", "4", "1"]
    assert rows["mes.phi"][2] == "0"
    assert "loaded: smollm2:135m" in out and "missing on the backend: ghost:1b" in out
    assert "submitted 9" in out and "succeeded 7" in out


def test_jobs_table_and_one_job_summary():
    code, out = run(list_jobs, ["jobs", "list"], terminal=True)
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:3]] == [
        ["job_1", "inference", "succeeded"], ["job_2", "inference", "failed"]]
    assert "2.5s" in out and "timeout" in out and "more: --cursor 1735689600000" in out
    code, out = run(get_job, ["jobs", "get", "job_1"], terminal=True)
    assert code == 0 and "Paris is the capital." in out and "5 in, 6 out" in out
    code, out = run(get_job, ["jobs", "get", "op_1"], terminal=True)
    assert code == 0 and "pulling 8eeb52dfb3bb (40/100 bytes)" in out
    # Exit codes stay as they are: 1 for a failed job, table or not.
    code, out = run(get_job, ["jobs", "get", "job_2"], terminal=True)
    assert code == 1 and "timeout: the job ran past its deadline" in out


def test_keys_table_and_json():
    code, out = run(list_keys, ["keys", "list"], terminal=True, store=FakeKeys())
    assert code == 0 and out.splitlines()[1].split() == [
        "ci", "jobs,models", "2025-01-01", "00:00:00", "-", "ab12cd34"]
    code, out = run(list_keys, ["keys", "list"], terminal=False, store=FakeKeys())
    assert json.loads(out) == {"keys": KEYS}


def test_models_pull_keeps_options_given_before_or_after_it():
    args, _ = build_parser().parse_known_args(["models", "--url", "http://a", "pull", "m:1"])
    assert (args.models_command, args.model_id, args.url) == ("pull", "m:1", "http://a")
    args, _ = build_parser().parse_known_args(["models", "pull", "m:1", "--key", "k", "--json"])
    assert (args.key, args.json, args.url) == ("k", True, None)
    args, _ = build_parser().parse_known_args(["models"])
    assert args.models_command is None
