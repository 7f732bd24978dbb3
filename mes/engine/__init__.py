"""MES engine: an HTTP server speaking Ollama's wire protocol, backed by a pluggable generator.

It stands in for Ollama in tests, benchmarks and local runs. It shares no code with the
rest of MES on purpose, so conformance tests compare two independent readings of
Ollama's API docs. Modules:

- ``config``: EngineConfig / ModelSpec (catalogue, latencies, limits)
- ``protocol``: wire shapes, error texts, durations and timestamps
- ``generator``: the Generator interface and num_predict/stop handling
- ``simulated``: the deterministic simulated generator
- ``schema_instance``: JSON-Schema instance builder for structured outputs
- ``words``: hash-based RNG and vocabulary
- ``scheduler``: slots, queue, keep_alive expiry, LRU eviction, counters
- ``faults``: injectable failures
- ``inference``: generate/chat request flow
- ``routes``: URL table and the small endpoints (tags, ps, show, admin)
- ``server``: EngineServer (HTTP plumbing); see its docstring for test usage
- ``cli``: ``python -m mes.engine`` / ``mes engine``

Importing this package has no side effects.
"""
