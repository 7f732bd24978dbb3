"""Benchmark: the engine's llamacpp generator over HTTP against bare llama-cpp-python.

    python -m mes.engine.bench [--runs 7] [--num-predict 128] [--threads N] [--num-ctx 2048]

Same model, prompt and settings on both sides: the GGUF's chat template around one user
message, greedy decoding (temperature 0, seed 42, Ollama's top_k 40 / top_p 0.9 /
repeat_penalty 1.1), the same num_ctx, n_threads = n_threads_batch, and every run
evaluates its whole prompt (the engine never reuses a cached prefix, so the bare side
resets its context before each run too). The engine runs as a subprocess
(`python -m mes.engine`) and is read as a streaming NDJSON client would; the bare side
runs in this process, never at the same time. Runs are interleaved (the order reversed
every other round, so no side always follows another), after one warm-up each, and
medians and bests are printed:

- engine: wall time from sending the request to the final NDJSON line;
- bare chat completion: `Llama.create_chat_completion`, what a llama-cpp-python user writes;
- bare generate loop: `Llama.generate` token ids only, the floor the engine builds on.

tokens/s = completion tokens / wall seconds (prompt processing included, the same work on
every side). On a shared 2-core machine other processes steal cycles from llama.cpp's two
threads, so single runs scatter widely: look at medians over many runs. Figures only:
nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mes.engine.gguf import DEFAULT_MODEL, resolve

PROMPT = "Write a long story about a dragon who learns to fly."
SAMPLING = {"temperature": 0.0, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1}


@dataclass
class Run:
    """Hold one timed generation."""

    tokens: int
    seconds: float
    text: str

    @property
    def rate(self) -> float:
        """Return completion tokens per wall second."""
        return self.tokens / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    """Run `python -m mes.engine` (llamacpp) on a free port for the benchmark."""

    def __init__(self, threads: int, num_ctx: int) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "MES_ENGINE_GENERATOR"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mes.engine", "--port", str(self.port), "--threads", str(threads),
             "--num-ctx", str(num_ctx)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the engine did not start; try: python -m mes.engine --port 0")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/api/version")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def generate(self, num_predict: int, seed: int) -> Run:
        """Stream one /api/generate and time it to the final line."""
        body = json.dumps({"model": DEFAULT_MODEL, "prompt": PROMPT, "stream": True,
                           "options": {**SAMPLING, "seed": seed, "num_predict": num_predict}})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        started = time.perf_counter()
        conn.request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        pieces, final = [], {}
        for line in response:
            chunk = json.loads(line)
            if chunk.get("done"):
                final = chunk
                break
            pieces.append(chunk["response"])
        seconds = time.perf_counter() - started
        conn.close()
        return Run(int(final["eval_count"]), seconds, "".join(pieces))

    def stop(self) -> None:
        """Stop the engine process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bare:
    """Run the same generation with llama-cpp-python directly."""

    def __init__(self, path: Path, threads: int, num_ctx: int) -> None:
        import llama_cpp
        import llama_cpp.llama_chat_format

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=num_ctx, n_batch=512, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.messages = [{"role": "user", "content": PROMPT}]
        # The GGUF's own chat template, rendered as create_chat_completion renders it.
        template = self.llm.metadata["tokenizer.chat_template"]
        eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode()
        bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode()
        prompt = llama_cpp.llama_chat_format.Jinja2ChatFormatter(template, eos, bos)(messages=self.messages).prompt
        self.prompt_tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def chat_completion(self, num_predict: int, seed: int) -> Run:
        """Time `create_chat_completion`, the high-level call."""
        self.llm.reset()
        started = time.perf_counter()
        reply = self.llm.create_chat_completion(self.messages, max_tokens=num_predict, seed=seed, **{
            "temperature": SAMPLING["temperature"], "top_k": SAMPLING["top_k"], "top_p": SAMPLING["top_p"],
            "min_p": SAMPLING["min_p"], "repeat_penalty": SAMPLING["repeat_penalty"]})
        seconds = time.perf_counter() - started
        return Run(reply["usage"]["completion_tokens"], seconds, reply["choices"][0]["message"]["content"])

    def generate_loop(self, num_predict: int, seed: int) -> Run:
        """Time a bare `Llama.generate` loop: token ids, end-of-generation check, nothing else."""
        tokens, vocab = self.prompt_tokens, self.vocab
        self.llm.reset()
        self.llm.set_seed(seed)
        started = time.perf_counter()
        out: list[int] = []
        for token in self.llm.generate(tokens, temp=SAMPLING["temperature"], top_k=SAMPLING["top_k"],
                                       top_p=SAMPLING["top_p"], min_p=SAMPLING["min_p"],
                                       repeat_penalty=SAMPLING["repeat_penalty"]):
            if self.lib.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            if len(out) >= num_predict:
                break
        seconds = time.perf_counter() - started
        return Run(len(out), seconds, self.llm.detokenize(out).decode(errors="replace"))


def _median(runs: Sequence[Run]) -> tuple[float, float, int, float]:
    return (statistics.median(r.rate for r in runs), statistics.median(r.seconds for r in runs),
            int(statistics.median(r.tokens for r in runs)), max(r.rate for r in runs))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table of medians."""
    parser = argparse.ArgumentParser(prog="python -m mes.engine.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per side (default 7)")
    parser.add_argument("--num-predict", type=int, default=128, help="tokens to generate (default 128)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="n_threads = n_threads_batch (default: CPU cores)")
    parser.add_argument("--num-ctx", type=int, default=2048, help="context window (default 2048)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    path = resolve({})[DEFAULT_MODEL]
    print(f"model {DEFAULT_MODEL} ({path.name}), {args.num_predict} tokens, threads {args.threads}, "
          f"num_ctx {args.num_ctx}, {args.runs} runs, {os.cpu_count()} CPU cores", flush=True)
    engine = EngineProcess(args.threads, args.num_ctx)
    try:
        bare = Bare(path, args.threads, args.num_ctx)
        sides: dict[str, Callable[[int, int], Run]] = {
            "engine (HTTP, streaming NDJSON)": engine.generate,
            "bare create_chat_completion": bare.chat_completion,
            "bare Llama.generate loop": bare.generate_loop,
        }
        results: dict[str, list[Run]] = {name: [] for name in sides}
        for name, side in sides.items():
            side(args.num_predict, args.seed)  # warm-up: load, caches, allocator
        for round_ in range(args.runs):
            order = list(sides.items())
            for name, side in order if round_ % 2 == 0 else reversed(order):
                results[name].append(side(args.num_predict, args.seed))
    finally:
        engine.stop()
    reference = _median(results["bare create_chat_completion"])[0]
    best_reference = _median(results["bare create_chat_completion"])[3]
    print("\n| side | tokens | median s | median tokens/s | vs bare chat completion | best tokens/s | best vs bare |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        rate, seconds, tokens, best = _median(runs)
        print(f"| {name} | {tokens} | {seconds:.3f} | {rate:.1f} | {100 * (rate / reference - 1):+.1f}% "
              f"| {best:.1f} | {100 * (best / best_reference - 1):+.1f}% |")
    texts = {name: runs[-1].text for name, runs in results.items()}
    same = len(set(texts.values())) == 1
    print(f"\nsame text on every side: {'yes' if same else 'no'}")
    if not same:
        for name, text in texts.items():
            print(f"  {name}: {text[:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
