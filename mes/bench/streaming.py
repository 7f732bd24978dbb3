"""`mes bench stream`: time to first token and tokens/s through MES's event stream, against the
engine's own stream in the same run, and many open streams held at once.

Three parts, each side by side with its baseline:
- simulated: the engine at a fixed per-token latency; TTFT and tokens/s direct (its NDJSON
  stream) and through MES (queue, worker, Redis log, SSE), alternating request by request;
- real: the same with SmolLM2-135M on llama.cpp (skipped with --no-real);
- hold: --streams SSE streams open for --hold-s seconds on jobs waiting behind a held engine,
  with the web processes' RSS and Redis's memory per open stream, probes of other requests
  meanwhile, then every stream followed to its `done`.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import time
from typing import Any
from urllib.parse import urlparse

import psutil
import requests

from mes.bench.report import percentile, table
from mes.bench.stack import BenchStack

MODEL = "smollm2:135m"


def say(text: str) -> None:
    """Print a line for people to stderr (tables go to stdout)."""
    import sys
    print(text, file=sys.stderr, flush=True)


def _direct(engine: str, body: dict) -> dict[str, float]:
    start = time.perf_counter()
    first = end = None
    tokens = 0
    with requests.post(engine + "/api/generate", json={**body, "stream": True}, stream=True,
                       timeout=600) as response:
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("response"):
                first = first or time.perf_counter()
            if chunk.get("done"):
                end = time.perf_counter()
                tokens = chunk.get("eval_count", 0)
    return _figures(start, first, end, tokens)


def _figures(start: float, first: float | None, end: float | None, tokens: int
             ) -> dict[str, float]:
    # Tokens/s from the first token to the whole reply in hand (`done`), on both sides: MES
    # sends several tokens an event and its last ones with `done`, so timing the first to
    # the last text event would credit it with the tail it has not delivered yet.
    if first is None or end is None:
        raise RuntimeError("the stream ended without a token or without done")
    return {"ttft_ms": (first - start) * 1000, "tokens": tokens,
            "tokens_per_s": (tokens - 1) / (end - first) if end > first and tokens > 1 else 0.0}


def _via_mes(stack: BenchStack, body: dict) -> dict[str, float]:
    start = time.perf_counter()
    first = end = None
    tokens = 0
    with requests.post(stack.web_url + "/v1/inference", json={**body, "stream": True},
                       headers=stack.headers, stream=True, timeout=600) as response:
        kind = None
        for raw in response.iter_lines(decode_unicode=True):
            if raw.startswith("event: "):
                kind = raw[7:]
            elif raw.startswith("data: ") and kind == "token":
                first = first or time.perf_counter()
            elif raw.startswith("data: ") and kind == "done":
                end = time.perf_counter()
                tokens = json.loads(raw[6:])["result"]["usage"]["completion_tokens"]
    return _figures(start, first, end, tokens)


def _compare(stack: BenchStack, engine: str, count: int, max_tokens: int,
             options: dict) -> dict[str, dict[str, float]]:
    mes_body = {"model": MODEL, "prompt": "Tell me about Paris.",
                "options": {**options, "max_tokens": max_tokens}}
    direct_body = {"model": MODEL, "prompt": "Tell me about Paris.", "keep_alive": "5m",
                   "options": {**options, "num_predict": max_tokens}}
    samples: dict[str, list[dict]] = {"direct": [], "mes": []}
    for i in range(count + 1):  # the first pair warms both paths up and is dropped
        order = ("direct", "mes") if i % 2 else ("mes", "direct")
        for side in order:
            got = _direct(engine, direct_body) if side == "direct" else _via_mes(stack, mes_body)
            if i:
                samples[side].append(got)
    figures = {}
    for side, runs in samples.items():
        ttft = [run["ttft_ms"] for run in runs]
        figures[side] = {"ttft_p50_ms": percentile(ttft, 50), "ttft_p99_ms": percentile(ttft, 99),
                         "tokens_per_s": statistics.median(run["tokens_per_s"] for run in runs),
                         "tokens": statistics.median(run["tokens"] for run in runs)}
    # The ratio of each pair, run back to back, then their median: on a shared machine the
    # engine's own speed drifts from one minute to the next, which the pairs cancel out.
    ratios = [m["tokens_per_s"] / d["tokens_per_s"]
              for m, d in zip(samples["mes"], samples["direct"]) if d["tokens_per_s"]]
    figures["added"] = {
        "ttft_p50_ms": figures["mes"]["ttft_p50_ms"] - figures["direct"]["ttft_p50_ms"],
        "ttft_pairs_p50_ms": statistics.median(
            m["ttft_ms"] - d["ttft_ms"] for m, d in zip(samples["mes"], samples["direct"])),
        "tokens_per_s_ratio": statistics.median(ratios) if ratios else float("nan")}
    return figures


def _open_streams(url: str, key: str, job_ids: list[str]) -> tuple[selectors.BaseSelector,
                                                                  dict[int, dict]]:
    parts = urlparse(url)
    selector = selectors.DefaultSelector()
    streams = {}
    for job_id in job_ids:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        sock.sendall((f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                      f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n")
                     .encode())
        sock.setblocking(False)
        state = {"sock": sock, "data": b"", "pings": 0, "done": False, "closed": False}
        streams[sock.fileno()] = state
        selector.register(sock, selectors.EVENT_READ, state)
    return selector, streams


def _pump(selector: selectors.BaseSelector, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in selector.select(timeout=0.2):
            state = key.data
            try:
                chunk = state["sock"].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                state["closed"] = True
                selector.unregister(state["sock"])
                continue
            state["data"] = (state["data"] + chunk)[-4096:]
            state["pings"] += chunk.count(b": ping")
            if b"event: done" in state["data"]:
                state["done"] = True


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            total += process.memory_info().rss
            total += sum(child.memory_info().rss for child in process.children(recursive=True))
        except psutil.Error:
            pass
    return total / 1_048_576


def _hold(args) -> dict[str, Any]:
    engine_args = ("--simulated", "--token-ms", "1", "--prompt-ms", "0", "--load-ms", "0",
                   "--num-parallel", "64", "--response-tokens", "4")
    with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": 8}],
                    concurrency=args.workers, engine_args=engine_args, web_workers=2) as stack:
        stack.extra_env = {"MES_STREAM_HEARTBEAT_S": "15"}
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        stack.start_web()
        requests.post(engine + "/mes-engine/faults", json={"hang": True}, timeout=5)
        session = requests.Session()
        job_ids = [session.post(stack.web_url + "/v1/jobs", headers=stack.headers, timeout=30,
                                json={"model": MODEL, "prompt": f"p{i}"}).json()["id"]
                   for i in range(args.streams)]
        redis = stack.redis()
        web_pids = [proc.popen.pid for proc in stack.procs if proc.name == "web"]
        rss_before, redis_before = _rss_mb(web_pids), redis.info("memory")["used_memory"]
        say(f"opening {args.streams} streams")
        selector, streams = _open_streams(stack.web_url, stack.key, job_ids)
        _pump(selector, 5)
        rss_open = _rss_mb(web_pids)
        redis_open = redis.info("memory")["used_memory"]
        probes = []
        end = time.monotonic() + args.hold_s
        say(f"holding them for {args.hold_s:g} s")
        while time.monotonic() < end:
            began = time.perf_counter()
            ok = session.get(f"{stack.web_url}/v1/jobs/{job_ids[0]}", headers=stack.headers,
                             timeout=10).status_code == 200
            probes.append(((time.perf_counter() - began) * 1000, ok))
            _pump(selector, 1.0)
        dropped = sum(1 for state in streams.values() if state["closed"])
        requests.delete(engine + "/mes-engine/faults", timeout=5)
        say("letting the jobs run; following every stream to its done")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(s["done"] for s in streams.values()
                                                      if not s["closed"]):
            _pump(selector, 1.0)
        done = sum(1 for state in streams.values() if state["done"])
        for state in streams.values():
            state["sock"].close()
        latencies = [ms for ms, ok in probes if ok]
        return {"streams": args.streams, "hold_s": args.hold_s,
                "dropped_while_held": dropped, "done": done,
                "errors": args.streams - done,
                "pings_per_stream_median": statistics.median(s["pings"] for s in streams.values()),
                "web_rss_mb_before": round(rss_before, 1), "web_rss_mb_open": round(rss_open, 1),
                "web_kib_per_stream": round((rss_open - rss_before) * 1024 / args.streams, 1),
                "redis_bytes_per_stream": round((redis_open - redis_before) / args.streams, 1),
                "probe_p50_ms": percentile(latencies, 50), "probe_p99_ms": percentile(latencies, 99),
                "probe_errors": sum(1 for _, ok in probes if not ok)}


def stream(args) -> dict[str, Any]:
    """Run the three parts and print their tables."""
    figures: dict[str, Any] = {}
    simulated = ("--simulated", "--token-ms", str(args.token_ms), "--prompt-ms", "0",
                 "--load-ms", "0", "--num-parallel", "8")
    with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": args.max_tokens}],
                    concurrency=args.workers, engine_args=simulated) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        stack.start_web()
        say(f"simulated engine at {args.token_ms} ms a token, {args.count} requests a side")
        figures["simulated"] = _compare(stack, engine, args.count, args.max_tokens, {})
    if not args.no_real:
        with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": args.max_tokens,
                                 "runner_options": {"num_ctx": 2048},
                                 "options": {"temperature": 0, "seed": 42}}],
                        concurrency=1, engine_args=("--num-ctx", "2048")) as stack:
            stack.start_redis()
            engine = stack.start_engine()
            stack.start_worker("w1", engine)
            stack.start_web()
            say(f"real SmolLM2-135M, {args.real_count} requests a side")
            figures["real"] = _compare(stack, engine, args.real_count, args.max_tokens,
                                       {"temperature": 0, "seed": 42})
    if args.streams:
        figures["hold"] = _hold(args)
    for part in ("simulated", "real"):
        if part in figures:
            f = figures[part]
            print(table(f"stream ({part}): direct engine stream vs MES SSE", [
                "side", "ttft p50 ms", "ttft p99 ms", "tokens/s", "tokens"], [
                [side, f[side]["ttft_p50_ms"], f[side]["ttft_p99_ms"], f[side]["tokens_per_s"],
                 f[side]["tokens"]] for side in ("direct", "mes")]))
            print(f"added ttft p50: {f['added']['ttft_p50_ms']:.2f} ms (median of the pairs: "
                  f"{f['added']['ttft_pairs_p50_ms']:.2f} ms); tokens/s MES/direct, median of "
                  f"the pairs: {f['added']['tokens_per_s_ratio']:.3f}\n")
    if "hold" in figures:
        h = figures["hold"]
        print(table(f"stream (hold): {h['streams']} open streams for {h['hold_s']:g} s",
                    ["figure", "value"], [[k, v] for k, v in h.items()]))
    return figures


def add_arguments(parser) -> None:
    """Add the stream scenario's flags to `mes bench`."""
    group = parser.add_argument_group("stream")
    group.add_argument("--token-ms", type=float, default=20.0,
                       help="stream: the simulated engine's latency per token")
    group.add_argument("--no-real", action="store_true", help="stream: skip the real model")
    group.add_argument("--real-count", type=int, default=6,
                       help="stream: real-model requests a side")
    group.add_argument("--streams", type=int, default=1000,
                       help="stream: open streams to hold (0 to skip)")
    group.add_argument("--hold-s", type=float, default=60.0,
                       help="stream: how long to hold them open")
