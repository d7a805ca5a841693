# The two commands a user needs: `make repro` (run the pipeline on its defaults) and `make test`.
# Both build .venv from requirements.lock first; the venv is rebuilt only when the lock changes.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-from-lock
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv repro test lint format lock bench

venv: $(STAMP)

$(STAMP): requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check "uv==$$(sed -n 's/^uv==//p' requirements.lock)"
	# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (as on
	# our CI machines) Python never writes them either, so every stage's process recompiled TensorFlow
	# and Keras from source: `import keras` took 9.5 s instead of 3.8 s.
	$(VENV)/bin/uv pip install --compile-bytecode --python $(VENV)/bin/python -r requirements.lock
	touch $@

repro: venv
	dvc repro

# pytest: one worker per core (at most 4), whole files per worker: the slow end-to-end tests are
# chains of mostly single-threaded processes (dvc, TensorFlow start-up), so two of them share two cores well.
test: venv
	ruff check .
	ruff format --check .
	pytest -n auto --maxprocesses 4 --dist loadfile

# Benchmarks (pipeline overhead, data stages at scale, augmentation, backends): reports/benchmarks.md.
bench: venv
	python -m pipeline.bench

lint: venv
	ruff check --fix .
	ruff format .

# Re-resolve the lock after editing requirements.in.
lock: venv
	uv pip compile requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
