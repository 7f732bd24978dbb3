"""Check the Ollama client against a real local HTTP server that records what it was sent."""

from __future__ import annotations

import pytest

from mes.backends.ollama import OllamaClient
from mes.errors import (BackendBusy, BackendRejected, BackendServerError, BackendTimeout,
                        BackendUnavailable, JobCancelled, ModelNotFound)
from mes.stack import free_port
from tests.support.stub_server import StubServer

FINAL = {"model": "m:1", "created_at": "2024-01-01T00:00:00Z", "response": "", "done": True,
         "done_reason": "stop", "total_duration": 5_000_000, "load_duration": 1_000_000,
         "prompt_eval_count": 3, "prompt_eval_duration": 2_000_000, "eval_count": 2,
         "eval_duration": 3_000_000}


@pytest.fixture
def server():
    with StubServer(keep_alive=True) as srv:
        yield srv


@pytest.fixture
def client(server):
    client = OllamaClient(server.url, connect_timeout_s=1, read_timeout_s=2)
    yield client
    client.close()


def test_generate_sends_exact_body_and_joins_stream(server, client):
    server.default = (200, [{"model": "m:1", "response": "Hel", "done": False},
                            {"model": "m:1", "response": "lo", "done": False}, FINAL])
    completion = client.generate("m:1", "Say hi", system="Be brief", options={"num_predict": 4},
                                 format={"type": "object"}, keep_alive="5m", request_id="r-1")
    sent = server.requests[0]
    assert (sent["method"], sent["target"]) == ("POST", "/api/generate")
    assert sent["body"] == {"model": "m:1", "options": {"num_predict": 4},
                            "format": {"type": "object"}, "keep_alive": "5m", "prompt": "Say hi",
                            "system": "Be brief", "stream": True}
    assert sent["headers"]["X-Request-ID"] == "r-1"
    assert completion.text == "Hello" and completion.done_reason == "stop"
    assert (completion.prompt_eval_count, completion.eval_count) == (3, 2)
    assert completion.load_duration == 1_000_000


def test_chat_sends_messages_and_reads_message_content(server, client):
    final = {**FINAL, "message": {"role": "assistant", "content": ""}}
    del final["response"]
    server.default = (200, [{"model": "m:1", "message": {"role": "assistant", "content": "Yo"},
                             "done": False}, final])
    messages = [{"role": "user", "content": "hi"}]
    completion = client.chat("m:1", messages)
    assert server.requests[0]["target"] == "/api/chat"
    assert server.requests[0]["body"] == {"model": "m:1", "messages": messages, "stream": True}
    assert completion.text == "Yo"


def test_load_and_unload_bodies(server, client):
    server.default = (200, {"model": "m:1", "response": "", "done": True, "done_reason": "load"})
    client.load("m:1", "10m", options={"num_ctx": 2048})
    client.unload("m:1")
    assert server.requests[0]["body"] == {"model": "m:1", "options": {"num_ctx": 2048},
                                          "keep_alive": "10m", "stream": False}
    assert server.requests[1]["body"] == {"model": "m:1", "keep_alive": 0, "stream": False}


def test_tags_ps_version(server, client):
    server.default = (200, {"models": [{"name": "m:1"}], "version": "0.6.5"})
    assert client.tags() == [{"name": "m:1"}]
    assert client.ps() == [{"name": "m:1"}]
    assert client.version() == "0.6.5"
    assert [r["target"] for r in server.requests] == ["/api/tags", "/api/ps", "/api/version"]


@pytest.mark.parametrize("status,message,error", [
    (404, 'model "m:1" not found, try pulling it first', ModelNotFound),
    (503, "server busy, please try again.  maximum pending requests exceeded", BackendBusy),
    (500, "boom", BackendServerError),
    (400, "invalid options", BackendRejected),
])
def test_http_errors_are_mapped(server, client, status, message, error):
    server.default = (status, {"error": message})
    with pytest.raises(error) as info:
        client.generate("m:1", "x")
    assert message in info.value.message
    assert info.value.details["backend_status"] == status


def test_in_band_error_line_is_a_failure(server, client):
    server.default = (200, [{"model": "m:1", "response": "a", "done": False},
                            {"error": "out of memory"}])
    with pytest.raises(BackendServerError) as info:
        client.generate("m:1", "x")
    assert "out of memory" in info.value.message and info.value.retryable


def test_stream_without_done_is_a_failure(server, client):
    server.default = (200, [{"model": "m:1", "response": "a", "done": False}])
    with pytest.raises(BackendServerError):
        client.generate("m:1", "x")


def test_refused_connection_is_unavailable():
    client = OllamaClient(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1, read_timeout_s=1)
    with pytest.raises(BackendUnavailable) as info:
        client.version()
    assert info.value.retryable and "connection refused" in info.value.message


def test_read_timeout_is_backend_timeout(server, client):
    server.delay_s = 1.2
    with pytest.raises(BackendTimeout):
        client.generate("m:1", "x", read_timeout_s=0.3)


def test_should_stop_cuts_a_call_still_waiting_for_headers(server, client):
    # The server answers a whole, valid stream, but only after a delay: the call fails
    # only if the stop really cut the socket while it waited.
    server.delay_s = 1.2
    server.default = (200, [{"model": "m:1", "response": "a", "done": False}, FINAL])
    with pytest.raises(JobCancelled):
        client.generate("m:1", "x", should_stop=lambda: True)


def test_a_false_stop_check_lets_the_call_finish(server, client):
    server.default = (200, [{"model": "m:1", "response": "a", "done": False}, FINAL])
    assert client.generate("m:1", "x", should_stop=lambda: False).text == "a"


def test_streams_reuse_one_keep_alive_connection(server, client):
    server.default = (200, [{"model": "m:1", "response": "a", "done": False}, FINAL])
    for _ in range(3):
        client.generate("m:1", "x", should_stop=lambda: False)
    # A new TCP connection per job would cost every job.
    assert len({r["peer"] for r in server.requests}) == 1
