"""Pull a model the backend lacks: the client's /api/pull, the progress record, the whole run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mes.backends.ollama import OllamaClient
from mes.errors import BackendServerError, ModelNotFound
from mes.intake.backend_models import backend_model_names, has_model, missing_models
from mes.intake.submit import submit_job
from mes.jobs import JobKind, JobStatus
from mes.store.progress import ProgressStore
from mes.worker.pull import PullProgress
from tests.support.runner import run_job


class Pulls:
    """Serve POST /api/pull with fixed NDJSON lines and keep the bodies it was sent."""

    def __init__(self, lines: list[dict]):
        self.lines, self.bodies = lines, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                owner.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                data = b"".join(json.dumps(line).encode() + b"\n" for line in owner.lines)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        self.client = OllamaClient(f"http://127.0.0.1:{self.server.server_address[1]}",
                                   connect_timeout_s=1, read_timeout_s=5)

    def close(self):
        self.client.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pulls():
    made = []

    def make(lines):
        made.append(Pulls(lines))
        return made[-1]
    yield make
    for server in made:
        server.close()


def test_pull_streams_every_line_to_the_callback(pulls):
    lines = [{"status": "pulling manifest"},
             {"status": "pulling 8eeb52dfb3bb", "digest": "sha256:8eeb", "total": 100, "completed": 40},
             {"status": "success"}]
    server = pulls(lines)
    seen = []
    assert server.client.pull("llama3.1:8b", on_progress=seen.append) == {"status": "success"}
    assert seen == lines
    assert server.bodies == [{"model": "llama3.1:8b", "stream": True}]


def test_an_unknown_name_fails_at_once_and_a_cut_stream_can_heal(pulls):
    server = pulls([{"status": "pulling manifest"},
                    {"error": "pull model manifest: file does not exist"}])
    with pytest.raises(ModelNotFound) as info:
        server.client.pull("nope:1b")
    assert not info.value.retryable
    server = pulls([{"status": "pulling manifest"}])  # no success: ended early
    with pytest.raises(BackendServerError) as info:
        server.client.pull("llama3.1:8b")
    assert info.value.retryable


def test_progress_sums_layers_keeps_distinct_lines_and_writes_sparingly(redis, clock):
    store = ProgressStore(redis, ttl_s=60)
    progress = PullProgress("op_1", store, clock, write_every_s=10)
    progress.observe({"status": "pulling manifest"})
    for done in (10, 20, 30):
        progress.observe({"status": "pulling aaa", "digest": "sha256:aaa", "total": 30,
                          "completed": done})
    # Written on a new status, and otherwise not before write_every_s: the clock did not move.
    assert store.read("op_1")["completed"] == 10
    progress.observe({"status": "pulling bbb", "digest": "sha256:bbb", "total": 70})
    assert store.read("op_1")["completed"] == 30
    progress.observe({"status": "pulling bbb", "digest": "sha256:bbb", "total": 70, "completed": 70})
    clock.advance(11)
    progress.observe({"status": "pulling bbb", "digest": "sha256:bbb", "total": 70, "completed": 70})
    record = store.read("op_1")
    assert (record["status"], record["completed"], record["total"]) == ("pulling bbb", 100, 100)
    assert record["lines"] == ["pulling manifest", "pulling aaa", "pulling bbb"]
    assert store.read_many(["op_1", "op_2"]) == {"op_1": record}


class Sent:
    def __init__(self):
        self.jobs = []

    def send(self, job):
        self.jobs.append(job)


def test_a_pull_operation_runs_on_the_engine_and_records_its_progress(
        store, registry, backend, clock, redis):
    assert missing_models(registry, backend_model_names(backend)) == ["ghost:1b"]
    job, _ = submit_job({"model": "ghost:1b"}, owner="ops", store=store, registry=registry,
                        dispatcher=Sent(), clock=clock, max_timeout_s=600, kind=JobKind.PULL)
    assert job.id.startswith("op_") and job.queue == "mes.phi"
    done = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock).job
    assert done.status is JobStatus.SUCCEEDED, done.error
    record = ProgressStore(redis, ttl_s=60).read(job.id)
    assert record["status"] == "success" and record["lines"][0] == "pulling manifest"
    assert record["total"] and record["completed"] == record["total"]
    assert done.result["pull"]["total"] == record["total"]
    assert missing_models(registry, backend_model_names(backend)) == []


def test_untagged_ids_match_ollamas_latest_tag():
    assert has_model("mistral", {"mistral:latest"}) and has_model("a:1", {"a:1"})
    assert not has_model("a:1", {"a:latest"}) and not has_model("mistral", {"mistral:7b"})
