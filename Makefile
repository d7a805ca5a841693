# The two commands a user needs: `make repro` (run the pipeline on its defaults) and `make test`.
# Both build .venv from requirements.lock first; the venv is rebuilt only when the lock changes.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-from-lock
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv repro test lint format lock bench verify team-up team-down

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

# pytest: one worker more than the cores (at most 4), whole files per worker. The slow end-to-end tests
# are chains of processes (dvc, TensorFlow start-up, servers) that wait on each other: with one worker
# per core, 2 cores were 78% busy (user+sys 45 of 58 core-minutes); with three, the suite took 27 min 9 s
# against 28 min 52 s (2-core AMD EPYC, two slow tests also trimmed in between).
# --no-loadscope-reorder: xdist otherwise hands out the files with the most tests first, so the
# one-test end-to-end files (the JAX pipeline: 8 minutes then) started last; tests/conftest.py orders the
# files longest first.
WORKERS ?= $(shell python3 -c "import os; print(min(4, len(os.sched_getaffinity(0)) + 1))")
test: venv
	ruff check .
	ruff format --check .
	pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# After `make repro` in a clone: the reproduced headline metrics against the committed ones, within
# params.yaml's verify.tolerance: "byte-identical", "reproduced", or each metric outside (exit 1).
verify: venv
	python -m pipeline.tools.verify

# A team's servers on this machine, to try convpipe against them (README: Working as a team):
# PostgreSQL, SeaweedFS S3 and an MLflow server with basic auth, all on 127.0.0.1, data and
# generated secrets in .team/ (git-ignored). team-up prints the settings to export; team-down stops
# the servers by the process ids team-up recorded, and keeps the data for the next team-up.
team-up: venv
	DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true python -m pipeline.tools.team up --dir .team

team-down: venv
	python -m pipeline.tools.team down --dir .team

# Benchmarks (pipeline overhead, data stages at scale, augmentation, backends): reports/benchmarks.md.
bench: venv
	python -m pipeline.bench

lint: venv
	ruff check --fix .
	ruff format .

# Re-resolve the lock after editing requirements.in.
lock: venv
	uv pip compile requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
