"""Hold one loaded GGUF's Llama instances, and iterate over one generation's tokens.

A Llama object is not thread-safe: an instance is checked out for a whole generation and
given back when its tokens end or are closed, and each decodes on its own compute thread
(mes.engine.compute says why).
"""

from __future__ import annotations

import codecs
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from mes.engine.compute import ComputeThread
from mes.engine.generator import Generation, Runner, ShouldStop


class LoadedModel:
    """Hold one loaded GGUF: its Llama instances, chat template and embedding instance."""

    def __init__(self, lib: Any, path: Path, runner: Runner) -> None:
        self.lib, self.path, self.runner = lib, path, runner
        self._lock = threading.Lock()
        self._free: list[Any] = []
        self._all: list[Any] = []
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        self._compute: dict[int, ComputeThread] = {}
        first = self._new_instance()
        self._all.append(first)
        self._free.append(first)
        self.vocab = lib.llama_model_get_vocab(first.model)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self.bos_text = first.detokenize([first.token_bos()], special=True).decode(errors="ignore")
        eos_text = first.detokenize([first.token_eos()], special=True).decode(errors="ignore")
        template = first.metadata.get("tokenizer.chat_template")
        self.formatter = (lib.llama_chat_format.Jinja2ChatFormatter(template, eos_text, self.bos_text)
                          if template else None)

    def _new_instance(self, **overrides: Any) -> Any:
        threads = self.runner.threads
        # n_threads_batch matters as much as n_threads: left at its default, prompt
        # processing on a 2-core machine crawls at a few tokens per second.
        settings = dict(n_ctx=self.runner.num_ctx, n_batch=self.runner.num_batch, n_threads=threads,
                        n_threads_batch=threads, verbose=False)
        instance = self.lib.Llama(model_path=str(self.path), **{**settings, **overrides})
        with self._lock:
            self._compute[id(instance)] = ComputeThread(f"llama-{self.path.stem}")
        return instance

    def compute(self, instance: Any) -> ComputeThread:
        """Return the thread that decodes for INSTANCE (mes.engine.compute says why)."""
        with self._lock:
            return self._compute[id(instance)]

    def checkout(self) -> Any:
        """Take a free instance, making another when every one is busy (num_parallel > 1)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        instance = self._new_instance()
        with self._lock:
            self._all.append(instance)
        return instance

    def give_back(self, instance: Any) -> None:
        """Return an instance taken with checkout()."""
        with self._lock:
            self._free.append(instance)

    def embedder(self) -> Any:
        """Return the embedding instance, making it on first use (call with embed_lock held)."""
        if self._embedder is None:
            n_ctx = self.runner.num_ctx  # one input per decode, up to the whole context
            self._embedder = self._new_instance(embedding=True, pooling_type=self.lib.LLAMA_POOLING_TYPE_MEAN,
                                                n_batch=n_ctx, n_ubatch=n_ctx)
        return self._embedder

    @property
    def embed_lock(self) -> threading.Lock:
        """Return the lock that serializes embedding calls."""
        return self._embed_lock

    def close(self) -> None:
        """Free every instance."""
        with self._lock:
            instances, self._all, self._free = self._all, [], []
        if self._embedder is not None:
            instances.append(self._embedder)
            self._embedder = None
        for instance in instances:
            instance.close()
        with self._lock:
            threads, self._compute = list(self._compute.values()), {}
        for thread in threads:
            thread.stop()

    def prompt_tokens(self, llm: Any, prompt: str | Sequence[Mapping[str, Any]], system: str | None,
                      raw: bool) -> list[int]:
        """Render PROMPT with the chat template (unless RAW) and tokenize it."""
        if raw and isinstance(prompt, str):
            return llm.tokenize(prompt.encode(), add_bos=self.add_bos, special=True)
        if isinstance(prompt, str):
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}]
        else:
            messages = [{"role": str(m.get("role") or "user"), "content": str(m.get("content") or "")}
                        for m in prompt]
        if self.formatter is None:  # no template in the GGUF: ChatML, the most common one
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            text += "<|im_start|>assistant\n"
        else:
            text = self.formatter(messages=messages).prompt
        add_bos = self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return llm.tokenize(text.encode(), add_bos=add_bos, special=True)


class Tokens:
    """Iterate over one generation's token texts; closing it returns the Llama instance."""

    def __init__(self, model: LoadedModel, llm: Any, steps: Iterator[int], first: int,
                 context: list[int], should_stop: ShouldStop, n_ctx: int) -> None:
        self._model, self._llm, self._steps = model, llm, steps
        self._next: int | None = first
        self._context = context
        self._should_stop = should_stop
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._n_ctx = n_ctx
        self._done = False
        self.generation: Generation | None = None

    def __iter__(self) -> "Tokens":
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        try:
            token = self._step()
        except BaseException:
            self.close()
            raise
        if token is None or self._model.lib.llama_vocab_is_eog(self._model.vocab, token):
            self.close()
            raise StopIteration
        self._context.append(token)
        # Partial UTF-8 sequences come out as "" until complete; the token still counts.
        return self._decoder.decode(self._llm.detokenize([token]))

    def _step(self) -> int | None:
        if self._next is not None:
            token, self._next = self._next, None
            return token
        if self._should_stop():
            return None
        if self._llm.n_tokens >= self._n_ctx:
            if self.generation is not None:
                self.generation.done_reason = "length"
            return None
        return self._model.compute(self._llm).run(next, self._steps, None)

    def close(self) -> None:
        """Stop decoding and give the instance back (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self._steps.close()
        finally:
            self._model.give_back(self._llm)
