"""`mes bench swap`: models that share one backend able to hold only `--cap` of them.

The workload: `--models` models in as many families (one worker each), `--jobs-per-model`
batch jobs each, submitted interleaved (A B C D A B C D ...) as one native batch
(POST /v1/batches), plus an interactive job (POST /v1/jobs) for a random model every
`--interactive-every-s` while the batch work lasts. The simulated engine holds `--cap`
models (--max-loaded), takes `--load-s` to load one and about `--job-s` per job.

Three sides, each on a fresh engine:
  fifo     the same jobs straight to the engine in submission order, by as many clients as
           MES has worker slots in all; the engine's own Ollama-like scheduler decides.
  mes_off  MES with MES_SCHEDULER=off (each family takes its own next job).
  mes_on   MES with MES_SCHEDULER=on (swap-aware scheduling).

A job's wait is the time from its submission (the batch's, or the interactive request's)
until its generation began: queueing, the load it paid, MES's overhead; everything but its
own prompt and generation time. Loads are the engine's own counters; `loads_for_batch` counts
those after which the model served batch work (the rest served interactive jobs only).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from mes.bench.processes import wait_until
from mes.bench.report import table
from mes.bench.swap_figures import foreseen, medians, summary
from mes.bench.stack import Stack
from mes.settings import Settings
from mes.store import names

TOKENS = 8          # every job asks for this many tokens, so its time is TOKENS x token_ms
NAMES = "abcdefghijklmnopqrstuvwxyz"
SIDES = ("fifo", "mes_off", "mes_on")
LOADED_MS = 50      # a job whose load_duration passed this paid a load


def add_arguments(parser) -> None:
    """Add the swap scenario's own flags to `mes bench`."""
    group = parser.add_argument_group("swap")
    group.add_argument("--models", type=int, default=4, help="swap: models, one family each")
    group.add_argument("--jobs-per-model", type=int, default=40, help="swap: batch jobs per model")
    group.add_argument("--load-s", type=float, default=2.0, help="swap: a model's load time")
    group.add_argument("--job-s", type=float, default=0.1, help="swap: one job's run time")
    group.add_argument("--cap", type=int, default=1, help="swap: models the backend holds")
    group.add_argument("--interactive-every-s", type=float, default=2.0,
                       help="swap: an interactive job this often (0: none)")
    group.add_argument("--quantum-s", type=float, help="swap: MES_SCHED_QUANTUM_S for mes_on "
                       "(default: MES's default)")
    group.add_argument("--sides", default=",".join(SIDES),
                       help="swap: which sides to run, comma-separated")
    group.add_argument("--seed", type=int, default=16, help="swap: the interactive models' seed")


def model_ids(args) -> list[str]:
    """Return the bench's model names: swap-a:1b, swap-b:1b, ..."""
    return [f"swap-{NAMES[i]}:1b" for i in range(args.models)]


def write_models_file(args, path: Path) -> Path:
    """Write a models file: each model in a family of its own, `--workers` slots each."""
    models = model_ids(args)
    path.write_text(json.dumps({
        "families": {f"f{i}": {"concurrency": args.workers} for i in range(len(models))},
        "models": [{"id": m, "family": f"f{i}", "timeout_s": 1700, "max_tokens": 64,
                    "max_queue": 1_000_000} for i, m in enumerate(models)]}))
    return path


def engine_args(args) -> tuple[str, ...]:
    """Return the simulated engine's flags: the cap, and per model its load and token time."""
    token_ms = args.job_s * 1000 / TOKENS
    per_model = [f"{m},load_ms={args.load_s * 1000:g},token_ms={token_ms:g}" for m in model_ids(args)]
    return ("--max-loaded", str(args.cap), "--prompt-ms", "0", "--num-parallel", str(args.workers),
            "--response-tokens", str(TOKENS), "--max-queue", "100000",
            *[flag for spec in per_model for flag in ("--model", spec)])


def batch_lines(args) -> list[dict]:
    """Return the batch work in submission order: A B C D A B C D ..."""
    return [{"custom_id": f"{m}-{j}", "model": m, "prompt": f"job {j} for {m}",
             "options": {"max_tokens": TOKENS}, "timeout_s": 1700}
            for j in range(args.jobs_per_model) for m in model_ids(args)]


class Interactive:
    """Send an interactive job for a random model every few seconds until stopped."""

    def __init__(self, args, send):
        self._every = args.interactive_every_s
        self._models = model_ids(args)
        self._rng = random.Random(args.seed)
        self._send = send              # send(model, submitted_at) -> a record
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8)
        self.sent: list = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        """Start sending, the first one an interval after the batch work was submitted."""
        if self._every > 0:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            model = self._rng.choice(self._models)
            self.sent.append(self._pool.submit(self._send, model, time.time()))

    def stop(self) -> list:
        """Stop sending and return every record once its job is done."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True)
        return [future.result() for future in self.sent]


def engine_loads(url: str) -> dict[str, int]:
    """Return the engine's load count per model."""
    stats = requests.get(url + "/mes-engine/stats", timeout=10).json()["models"]
    return {m: s["loads"] for m, s in stats.items()}










def run_fifo(args, log_dir: Path) -> dict[str, Any]:
    """Send the jobs straight to the engine, in order, from one client per MES worker slot."""
    with Stack(log_dir, write_models_file(args, log_dir / "models.json"), queue="mes.f0",
               settings={}, engine_args=engine_args(args), simulated=True) as stack:
        url = stack.start_engine()
        local = threading.local()

        def generate(model: str, submitted_at: float) -> dict:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            response = session.post(url + "/api/generate", timeout=3600, json={
                "model": model, "prompt": "job", "stream": False,
                "options": {"num_predict": TOKENS}})
            done = time.time()
            if response.status_code != 200:
                return {"ok": False, "wait": None, "paid_load": False, "done": done}
            body = response.json()
            own = (body.get("prompt_eval_duration", 0) + body.get("eval_duration", 0)) / 1e9
            load_s = body.get("load_duration", 0) / 1e9
            return {"ok": True, "wait": done - submitted_at - own, "done": done, "model": model,
                    "start": done - own - load_s, "paid_load": load_s * 1000 > LOADED_MS}

        lines = batch_lines(args)
        started = time.time()
        interactive = Interactive(args, generate)
        interactive.start()
        with ThreadPoolExecutor(max_workers=args.models * args.workers) as clients:
            batch = list(clients.map(lambda line: generate(line["model"], started), lines))
        finished = max(r["done"] for r in batch)
        return summary(finished - started, engine_loads(url), batch, interactive.stop())


def run_mes(args, log_dir: Path, scheduler: str) -> dict[str, Any]:
    """Run the workload through MES with the scheduler on or off."""
    settings = {"MES_API_KEYS": "bench:bench-swap-key-1:admin", "MES_LOG_LEVEL": "warning",
                "MES_MAX_LOADED_MODELS": str(args.cap), "MES_SCHEDULER": scheduler}
    if scheduler == "on" and args.quantum_s is not None:
        settings["MES_SCHED_QUANTUM_S"] = repr(args.quantum_s)
    headers = {"Authorization": "Bearer bench-swap-key-1"}
    with Stack(log_dir, write_models_file(args, log_dir / "models.json"), queue="mes.f0",
               settings=settings, engine_args=engine_args(args), simulated=True) as stack:
        stack.start_redis()
        stack.start_engine()
        for i in range(args.models):
            stack.start_worker(f"f{i}", queue=f"mes.f{i}", concurrency=args.workers)
        stack.start_beat()
        stack.start_web()
        session = requests.Session()

        def submit(model: str, submitted_at: float) -> tuple[str, float]:
            response = requests.post(stack.web_url + "/v1/jobs", headers=headers, timeout=60,
                                     json={"model": model, "prompt": "now",
                                           "options": {"max_tokens": TOKENS}, "timeout_s": 1700})
            response.raise_for_status()
            return response.json()["id"], submitted_at

        started = time.time()
        created = session.post(stack.web_url + "/v1/batches", headers=headers, timeout=120,
                               json={"requests": batch_lines(args)})
        created.raise_for_status()
        batch_id = created.json()["id"]
        interactive = Interactive(args, submit)
        interactive.start()
        wait_until(lambda: session.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=headers,
                                       timeout=30).json()["finished_at"] is not None,
                   3600, "the batch ended")
        sent = interactive.stop()
        lines = session.get(f"{stack.web_url}/v1/batches/{batch_id}/results", headers=headers,
                            timeout=120).text.splitlines()
        batch_ids = [json.loads(line)["job"]["id"] for line in lines]
        redis = stack.redis()
        wait_until(lambda: all(jobs_final(redis, [i for i, _ in sent])), 600,
                   "the interactive jobs ended")
        batch = [job_record(job, started) for job in read_jobs(redis, batch_ids)]
        inter = [job_record(job, at) for job, (_, at) in zip(read_jobs(redis, [i for i, _ in sent]),
                                                             sent)]
        finished = max(job["finished_at"] for job in read_jobs(redis, batch_ids))
        figures = summary(finished - started, engine_loads(stack.engine_url), batch, inter)
        figures["fewest_loads_foreseen"] = foreseen(batch, inter, started)
        status = session.get(stack.web_url + "/v1/status", headers=headers, timeout=30).json()
        figures["swaps_avoided"] = status.get("scheduling", {}).get("swaps_avoided")
        return figures


def read_jobs(redis, ids: list[str]) -> list[dict]:
    """Return the stored records of jobs, in order."""
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(names.job(job_id), "data")
    return [json.loads(raw) for raw in pipe.execute()]


def jobs_final(redis, ids: list[str]) -> list[bool]:
    """Tell for each job whether it has ended."""
    return [job["status"] in ("succeeded", "failed", "cancelled", "expired")
            for job in read_jobs(redis, ids)]


def job_record(job: dict, submitted_at: float) -> dict:
    """Return a job's wait (up to its generation) and whether it paid a load."""
    if job["status"] != "succeeded":
        return {"ok": False, "wait": None, "paid_load": False}
    timings = job["result"]["timings"]
    own = (timings.get("prompt_ms", 0) + timings.get("generate_ms", 0)) / 1000
    return {"ok": True, "wait": job["finished_at"] - submitted_at - own, "model": job["model"],
            "start": job["started_at"], "finished": job["finished_at"],
            "submitted": submitted_at, "paid_load": timings.get("load_ms", 0) > LOADED_MS}


def targets(args, med: dict[str, dict]) -> dict[str, Any]:
    """Check the issue's targets for mes_on against the medians."""
    quantum = args.quantum_s if args.quantum_s is not None else Settings.sched_quantum_s
    found: dict[str, Any] = {"quantum_s": quantum}
    on = med.get("mes_on")
    if on is None:
        return found
    if "fifo" in med:
        found["makespan_vs_fifo"] = round(on["makespan_s"] / med["fifo"]["makespan_s"], 3)
        found["makespan_met"] = found["makespan_vs_fifo"] <= 0.5
    if args.cap == 1:
        found["loads_bound"] = args.models + 2
        found["loads_met"] = on["loads"] <= args.models + 2
        found["loads_for_batch_met"] = on["loads_for_batch"] <= args.models + 2
        # What no scheduler could beat on this run's arrivals, even knowing them in advance.
        found["fewest_loads_foreseen"] = on.get("fewest_loads_foreseen")
    if on["interactive_wait_p95_s"] is not None:
        found["interactive_bound_s"] = args.load_s + quantum
        found["interactive_met"] = on["interactive_wait_p95_s"] <= args.load_s + quantum
    return found


def swap(args) -> dict[str, Any]:
    """Run each side `--runs` times; report the medians side by side and the targets."""
    sides = [side for side in args.sides.split(",") if side]
    unknown = set(sides) - set(SIDES)
    if unknown:
        raise SystemExit(f"mes bench swap: unknown sides {sorted(unknown)}; choose from {SIDES}")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for run in range(args.runs):
        for side in sides:
            log_dir = Path(tempfile.mkdtemp(prefix=f"mes-bench-swap-{side}-"))
            figures = (run_fifo(args, log_dir) if side == "fifo"
                       else run_mes(args, log_dir, "on" if side == "mes_on" else "off"))
            print(f"swap run {run + 1} {side}: " + json.dumps(figures), flush=True,
                  file=sys.stderr)
            runs[side].append(figures)
    med = {side: medians(results) for side, results in runs.items()}
    keys = ("makespan_s", "loads", "loads_for_batch", "fewest_loads_foreseen",
            "batch_wait_p50_s", "batch_wait_p95_s",
            "interactive_wait_p50_s", "interactive_wait_p95_s", "interactive_wait_max_s")
    print(table(f"swap: {args.models} models x {args.jobs_per_model} jobs, load {args.load_s} s, "
                f"job {args.job_s} s, cap {args.cap}, interactive every "
                f"{args.interactive_every_s} s; medians of {args.runs} runs",
                ["side", "makespan s", "loads", "for batch", "fewest", "batch p50", "batch p95",
                 "inter p50", "inter p95", "inter max"],
                [[side, *[med[side].get(k, "-") for k in keys]] for side in sides]))
    found = targets(args, med)
    print("targets: " + json.dumps(found))
    return {"scenario": "swap", **med, "targets": found, "runs": runs}

