# The two commands: `make demo` (the main job on embedded defaults) and `make test` (the suite).
# Both create and reuse .venv/ through `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: an unpinned resolve would pull several GB of CUDA packages.
	$(PIP) install -q torch==2.13.0 -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dali,test]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The suite without the slow / Ray tests, for quick iterations.
test-fast: install
	$(PY) -m pytest -q -m "not slow and not ray" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/vared2 demo $(DEMO_ARGS)

bench: install
	$(PY) benchmarks/bench_dynamic_conv.py

# Re-pin after changing dependencies: a fresh resolve in a scratch venv, frozen.
constraints:
	rm -rf /tmp/vared2-constraints && $(PYTHON) -m venv /tmp/vared2-constraints
	/tmp/vared2-constraints/bin/pip install -q torch==2.13.0 && /tmp/vared2-constraints/bin/pip install -q ".[dali,test]"
	/tmp/vared2-constraints/bin/pip freeze | grep -v -e "^-e" -e "^vared2" | sed 's/+cpu//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
