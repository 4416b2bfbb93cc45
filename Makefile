# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs gnn-inn, trains the quickstart model (synthetic KG)
#   make test   creates .venv if needed, installs gnn-inn[test], runs the test suite
#
# Variables (override on the command line or in the environment):
#   PYTHON      interpreter used to create the venv              (default: python3)
#   VENV        venv folder                                      (default: .venv)
#   TORCH_SPEC  pip requirement installed before the package,
#               e.g. "torch==2.13.0"; empty = default resolution (default: empty)
#   EXTRAS      extras installed by `make test`                  (default: test)
#   FIND_LINKS  extra wheel folder for pip (--find-links)        (default: empty)
#   PYTEST_ARGS extra pytest arguments                           (default: empty)

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?=
EXTRAS ?= test
FIND_LINKS ?=
PYTEST_ARGS ?=

PIP = $(VENV)/bin/python -m pip
PIP_FLAGS = --disable-pip-version-check -q $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
STAMP = $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))
comma := ,

.PHONY: demo test install lint bench clean gpu-flagship

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: $(VENV)/bin/python pyproject.toml
	$(if $(TORCH_SPEC),$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)")
	$(PIP) install $(PIP_FLAGS) -e .
	touch $@

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(if $(TORCH_SPEC),$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)")
	$(PIP) install $(PIP_FLAGS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(VENV)/bin/gnn-inn train --config configs/quickstart.yaml --out runs/quickstart --overwrite

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# the flagship (CompGCN + rotation flow) and lookup + flow to convergence on one GPU, both
# benchmarks; results in docs/results/{fb15k-237,wn18rr}_gpu/, tables beside them
gpu-flagship: $(VENV)/.installed-base
	$(VENV)/bin/python scripts/campaign.py scripts/campaigns/fb15k-237_gpu.yaml
	$(VENV)/bin/python scripts/campaign.py scripts/campaigns/wn18rr_gpu.yaml

lint: $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) ruff
	$(VENV)/bin/ruff check src tests scripts

clean:
	rm -rf $(VENV) runs .pytest_cache
