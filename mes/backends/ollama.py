"""Talk to an Ollama server over its HTTP API, mapping every failure to mes.errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests

from mes.backends.interrupt import InterruptibleAdapter, StopWatch, Watcher
from mes.errors import (BackendBusy, BackendError, BackendRejected, BackendServerError,
                        BackendTimeout, BackendUnavailable, JobCancelled, ModelNotFound)


@dataclass(frozen=True)
class Completion:
    """Hold a finished generation: its text and Ollama's counts and durations (ns)."""

    text: str
    done_reason: str | None
    prompt_eval_count: int = 0
    eval_count: int = 0
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_duration: int = 0
    eval_duration: int = 0


class OllamaClient:
    """Call one Ollama server through one pooled Session with explicit timeouts."""

    def __init__(self, base_url: str, *, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 300.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.session = session or requests.Session()
        self._watcher = Watcher()
        adapter = InterruptibleAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def _request(self, method: str, path: str, *, body: dict | None = None, stream: bool = False,
                 read_timeout_s: float | None = None,
                 request_id: str | None = None) -> requests.Response:
        """Send one request; turn connection errors, timeouts and HTTP errors into ours."""
        timeout = (self.connect_timeout_s, read_timeout_s or self.read_timeout_s)
        headers = {"X-Request-ID": request_id} if request_id else None
        try:
            response = self.session.request(method, self.base_url + path, json=body,
                                            stream=stream, timeout=timeout, headers=headers)
        except requests.exceptions.ConnectTimeout as exc:
            raise BackendUnavailable(f"connecting to {self.base_url} timed out",
                                     {"url": self.base_url}) from exc
        except requests.exceptions.ConnectionError as exc:
            raise BackendUnavailable(f"cannot reach {self.base_url}: {_reason(exc)}",
                                     {"url": self.base_url}) from exc
        except requests.exceptions.Timeout as exc:
            raise BackendTimeout(f"{self.base_url}{path} gave no answer in {timeout[1]:g}s",
                                 {"url": self.base_url}) from exc
        except requests.exceptions.RequestException as exc:
            raise BackendServerError(f"request to {self.base_url}{path} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text
            finally:
                response.close()
            raise _status_error(response.status_code, str(message)[:500])
        return response

    def _json(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        response = self._request(method, path, body=body)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendServerError(f"{path} answered with invalid JSON") from exc

    def version(self) -> str:
        """Return the server's version string."""
        return str(self._json("GET", "/api/version").get("version", ""))

    def tags(self) -> list[dict[str, Any]]:
        """Return the models the server has."""
        return list(self._json("GET", "/api/tags").get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        """Return the models loaded in memory now."""
        return list(self._json("GET", "/api/ps").get("models") or [])

    def loaded_models(self) -> set[str]:
        """Return the names of the models loaded in memory now."""
        return {entry.get("name") or entry.get("model") for entry in self.ps()}

    def generate(self, model: str, prompt: str, *, system: str | None = None,
                 options: dict | None = None, format: Any = None, keep_alive: Any = None,
                 should_stop: Callable[[], bool] | None = None, read_timeout_s: float | None = None,
                 request_id: str | None = None,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        """Run /api/generate as a stream and return the whole completion; `on_text` sees each piece."""
        body = _body(model, options, format, keep_alive)
        body["prompt"] = prompt
        if system:
            body["system"] = system
        return self._stream("/api/generate", body, "response", should_stop, read_timeout_s,
                            request_id, on_text)

    def chat(self, model: str, messages: list[dict[str, Any]], *, options: dict | None = None,
             format: Any = None, keep_alive: Any = None,
             should_stop: Callable[[], bool] | None = None, read_timeout_s: float | None = None,
             request_id: str | None = None,
             on_text: Callable[[str], None] | None = None) -> Completion:
        """Run /api/chat as a stream and return the whole assistant message; `on_text` sees each piece."""
        body = _body(model, options, format, keep_alive)
        body["messages"] = messages
        return self._stream("/api/chat", body, "message", should_stop, read_timeout_s, request_id,
                            on_text)

    def embed(self, model: str, inputs: list[str], *, options: dict | None = None,
              keep_alive: Any = None, truncate: bool = True,
              dimensions: int | None = None) -> dict[str, Any]:
        """Run /api/embed and return Ollama's answer: embeddings and counts."""
        body = {**_body(model, options, None, keep_alive), "input": inputs, "truncate": truncate}
        if dimensions is not None:
            body["dimensions"] = dimensions
        return self._json("POST", "/api/embed", body)

    def pull(self, model: str, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
             should_stop: Callable[[], bool] | None = None,
             read_timeout_s: float | None = None) -> dict[str, Any]:
        """Run /api/pull as a stream, handing each progress line on; return the last one."""
        if should_stop is None:
            return self._read_pull(model, on_progress, read_timeout_s)
        watch = StopWatch(should_stop, self._watcher)
        try:
            with watch:
                return self._read_pull(model, on_progress, read_timeout_s)
        except BackendError:
            if watch.stopped:
                raise JobCancelled("the pull was stopped") from None
            raise

    def _read_pull(self, model: str, on_progress: Callable[[dict[str, Any]], None] | None,
                   read_timeout_s: float | None) -> dict[str, Any]:
        response = self._request("POST", "/api/pull", body={"model": model, "stream": True},
                                 stream=True, read_timeout_s=read_timeout_s)
        last: dict[str, Any] = {}
        try:
            for chunk in _ndjson(response, "/api/pull", read_timeout_s or self.read_timeout_s):
                if "error" in chunk:
                    raise _pull_error(str(chunk["error"])[:500])
                last = chunk
                if on_progress is not None:
                    on_progress(chunk)
        finally:
            response.close()
        if last.get("status") != "success":
            raise BackendServerError("/api/pull ended before success",
                                     {"last_status": last.get("status")})
        return last

    def load(self, model: str, keep_alive: Any, *, options: dict | None = None) -> Completion:
        """Load a model into memory (an empty prompt) and hold it for keep_alive."""
        body = _body(model, options, None, keep_alive)
        body["stream"] = False
        return _completion(self._json("POST", "/api/generate", body), "")

    def unload(self, model: str) -> Completion:
        """Unload a model from memory (an empty prompt with keep_alive 0)."""
        return _completion(self._json("POST", "/api/generate",
                                      {"model": model, "keep_alive": 0, "stream": False}), "")

    def _stream(self, path: str, body: dict, field: str, should_stop: Callable[[], bool] | None,
                read_timeout_s: float | None, request_id: str | None,
                on_text: Callable[[str], None] | None = None) -> Completion:
        body["stream"] = True
        if should_stop is None:
            return self._read_stream(path, body, field, read_timeout_s, request_id, on_text)
        watch = StopWatch(should_stop, self._watcher)
        try:
            with watch:
                return self._read_stream(path, body, field, read_timeout_s, request_id, on_text)
        except BackendError:
            if watch.stopped:
                # We cut the connection ourselves, which is what stops Ollama generating.
                raise JobCancelled("the call was stopped while generating") from None
            raise

    def _read_stream(self, path: str, body: dict, field: str, read_timeout_s: float | None,
                     request_id: str | None,
                     on_text: Callable[[str], None] | None = None) -> Completion:
        response = self._request("POST", path, body=body, stream=True,
                                 read_timeout_s=read_timeout_s, request_id=request_id)
        parts: list[str] = []
        final = None
        try:
            # Read to the end of the stream even after `done`: a fully read response goes
            # back to the pool, while closing it early drops the keep-alive connection.
            for chunk in _ndjson(response, path, read_timeout_s or self.read_timeout_s):
                if "error" in chunk:
                    # Ollama reports failures after the 200 header as an in-band line.
                    raise _status_error(500, str(chunk["error"])[:500])
                piece = chunk.get(field)
                if isinstance(piece, dict):
                    piece = piece.get("content")
                if piece:
                    parts.append(piece)
                    if on_text is not None:
                        on_text(piece)
                if chunk.get("done"):
                    final = chunk
        finally:
            response.close()
        if final is None:
            raise BackendServerError(f"{path} stream ended before done",
                                     {"partial_text": "".join(parts)})
        return _completion(final, "".join(parts))


def _ndjson(response: requests.Response, path: str, read_timeout_s: float) -> Iterator[dict]:
    try:
        for line in response.iter_lines():
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise BackendServerError(f"{path} sent a line that is not JSON") from exc
    except requests.exceptions.ConnectionError as exc:
        # requests raises ConnectionError for a read timeout inside a stream.
        if "timed out" in str(exc).lower():
            raise BackendTimeout(f"{path} stream stalled for {read_timeout_s:g}s") from exc
        raise BackendServerError(f"{path} connection dropped mid-stream") from exc
    except requests.exceptions.ChunkedEncodingError as exc:
        raise BackendServerError(f"{path} connection dropped mid-stream") from exc


def _body(model: str, options: dict | None, format: Any, keep_alive: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if options:
        body["options"] = options
    if format is not None:
        body["format"] = format
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    return body


def _completion(chunk: dict[str, Any], text: str) -> Completion:
    def count(name: str) -> int:
        value = chunk.get(name)
        return int(value) if isinstance(value, (int, float)) else 0
    if not text:
        text = chunk.get("response") or (chunk.get("message") or {}).get("content") or ""
    return Completion(text=text, done_reason=chunk.get("done_reason"),
                      prompt_eval_count=count("prompt_eval_count"), eval_count=count("eval_count"),
                      total_duration=count("total_duration"), load_duration=count("load_duration"),
                      prompt_eval_duration=count("prompt_eval_duration"),
                      eval_duration=count("eval_duration"))


def _status_error(status: int, message: str) -> BackendError:
    details = {"backend_status": status, "backend_message": message}
    lowered = message.lower()
    if status == 404 or ("model" in lowered and "not found" in lowered):
        return ModelNotFound(f"backend: {message}", details)
    if status == 503 and "busy" in lowered:
        return BackendBusy(f"backend: {message}", details)
    if status == 503:
        return BackendUnavailable(f"backend: {message}", details)
    if status >= 500:
        return BackendServerError(f"backend: {message}", details)
    return BackendRejected(f"backend: {message}", details)


def _pull_error(message: str) -> BackendError:
    """Map an in-band /api/pull error: a name the registry lacks fails at once, the rest heal."""
    details = {"backend_message": message}
    lowered = message.lower()
    if "file does not exist" in lowered or "not found" in lowered:
        return ModelNotFound(f"backend: cannot pull: {message}", details)
    return BackendServerError(f"backend: {message}", details)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text[:200]
