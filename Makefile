# One source of truth for installing and running grokforecast; the README, .ci/run and
# the docker images call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Torch first, pinned to the CPU build: a bare `torch` requirement would pull a multi-GB
# CUDA build. The package itself only asks for torch>=2.4.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install quickstart test test-slow lint corpus clean

$(BIN)/grokforecast: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/grokforecast

quickstart: install
	$(BIN)/grokforecast sweep studies/quickstart.toml
	$(BIN)/grokforecast report studies/quickstart.toml -o runs/quickstart-report.html

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Rebuild the shipped corpus (resumable: finished runs are skipped).
corpus: install
	for grid in grokforecast/corpus/grids/*.toml; do \
		name=$$(basename $$grid .toml); \
		$(BIN)/grokforecast corpus $$grid --out grokforecast/corpus/data/$$name || exit 1; \
	done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
