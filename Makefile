# The two commands: `make demo` (the main job on embedded defaults) and `make test` (the suite).
# Both create and reuse .venv/ through `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install install-ffcv test test-fast demo bench constraints clean

install: $(STAMP) install-ffcv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: an unpinned resolve would pull several GB of CUDA packages.
	$(PIP) install -q torch==2.13.0 -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dali,test]"
	touch $(STAMP)

# Optional FFCV clip cache (pipeline/data/ffcv_cache.py): needs libturbojpeg and OpenCV headers.
# Never fails `make install`: without root / apt-get, or when the build fails, warn and go on
# (the ffcv tests then skip).
install-ffcv: $(STAMP)
	@if $(PY) -c "import ffcv" 2>/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    libturbojpeg0-dev libopencv-dev pkg-config >/dev/null) || echo "warning: apt-get failed"; \
	  $(PIP) install -q -c constraints.txt ffcv==1.0.2 \
	    || echo "warning: ffcv did not build; the FFCV backend and its tests are unavailable"; \
	else \
	  echo "warning: not root or no apt-get: skipping ffcv (make install-ffcv as root to add it)"; \
	fi

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The suite without the slow / Ray tests, for quick iterations.
test-fast: install
	$(PY) -m pytest -q -m "not slow and not ray" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/vared2 demo $(DEMO_ARGS)

# Each prints its ratio against a baseline timed in the same run; results: benchmarks/RESULTS.md.
bench: install
	$(PY) benchmarks/bench_dynamic_conv.py
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_loaders.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_sweep.py

# Re-pin after changing dependencies: a fresh resolve in a scratch venv, frozen.
constraints:
	rm -rf /tmp/vared2-constraints && $(PYTHON) -m venv /tmp/vared2-constraints
	/tmp/vared2-constraints/bin/pip install -q torch==2.13.0 && /tmp/vared2-constraints/bin/pip install -q ".[dali,test]" ffcv==1.0.2
	/tmp/vared2-constraints/bin/pip freeze | grep -v -e "^-e" -e "^vared2" | sed 's/+cpu//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
