"""The command line: a real subprocess, env fallbacks and argument handling."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from mes.engine import cli
from mes.engine.protocol import FOREVER

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_line_with_deadline(stream, seconds: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return line[0] if line else ""


def test_subprocess_prints_ready_line_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mes.engine", "--simulated", "--port", str(port), "--token-ms", "0",
         "--load-ms", "0", "--model", "tiny:1m,response_tokens=3"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        line = read_line_with_deadline(proc.stderr, 15)
        assert line.strip() == f"mes-engine listening on http://127.0.0.1:{port}"
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Ollama is running"
        reply = requests.post(f"http://127.0.0.1:{port}/api/generate", timeout=5,
                              json={"model": "tiny:1m", "prompt": "hi", "stream": False}).json()
        assert reply["eval_count"] == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_without_simulated_exits_2(capsys):
    assert cli.main(["--port", "0"]) == 2
    assert "llamacpp generator is not built yet" in capsys.readouterr().err


def test_bad_faults_json_exits_2(capsys):
    assert cli.main(["--simulated", "--port", "0", "--faults", "{oops"]) == 2
    assert cli.main(["--simulated", "--port", "0", "--faults", '{"fail_next": "x"}']) == 2


@pytest.mark.parametrize("value, expected", [
    ("0.0.0.0", ("0.0.0.0", 11434)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    (":9001", ("127.0.0.1", 9001)),
    ("http://localhost:9002/", ("localhost", 9002)),
    ("[::1]:9003", ("::1", 9003)),
])
def test_parse_ollama_host(value, expected):
    assert cli.parse_host(value) == expected


def config_for(argv, environ):
    return cli.build_config(cli._parser().parse_args(["--simulated", *argv]), environ)


def test_env_fallbacks_and_flag_precedence():
    environ = {
        "OLLAMA_HOST": "0.0.0.0:12000", "OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "7",
        "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_KEEP_ALIVE": "-1", "MES_ENGINE_FAULTS": json.dumps({"fail_next": 1}),
    }
    config = config_for([], environ)
    assert (config.host, config.port, config.num_parallel, config.max_queue) == ("0.0.0.0", 12000, 4, 7)
    assert config.max_loaded_models == 2 and config.keep_alive == FOREVER and config.faults == {"fail_next": 1}
    config = config_for(["--host", "127.0.0.1", "--port", "1", "--num-parallel", "2", "--keep-alive", "30s",
                         "--faults", "{}", "--model", "a:1b,token_ms=3", "--model", "b"], environ)
    assert (config.host, config.port, config.num_parallel, config.keep_alive, config.faults) == ("127.0.0.1", 1, 2, 30.0, {})
    assert [m.name for m in config.models] == ["a:1b", "b:latest"] and config.models[0].token_ms == 3.0


def test_defaults_without_env():
    config = config_for([], {})
    assert (config.host, config.port, config.num_parallel, config.max_queue, config.max_loaded_models) == (
        "127.0.0.1", 11434, 1, 512, 3)
    assert config.keep_alive == 300.0 and len(config.models) == 6
