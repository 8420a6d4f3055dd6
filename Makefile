# One source of truth for installing and running grokforecast; the README, .ci/run and
# the docker images call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Torch first, pinned to the CPU build: a bare `torch` requirement would pull a multi-GB
# CUDA build. The package itself only asks for torch>=2.4. The docker images pick the
# wheel index (CPU or CUDA) with TORCH_INDEX_URL.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
# What gets installed: the editable checkout with the dev tools here; the images install
# the package itself (EDITABLE=) with the extras a cluster needs.
EXTRAS ?= dev
EDITABLE ?= -e

.PHONY: install quickstart test test-slow lint corpus clean \
	docker-env docker-build docker-build-cuda cluster-up cluster-sweep cluster-resume cluster-down

$(BIN)/grokforecast: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install --quiet $(EDITABLE) ".[$(EXTRAS)]"
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

# -- docker/: images and a small cluster (PostgreSQL, Ray head and workers, dashboard) ---
COMPOSE := docker compose --project-directory docker -f docker/compose.yaml
STUDY ?= studies/quickstart.toml
WORKERS ?= 2

# docker/.env holds the cluster's secrets (a fresh random password and Ray token); never committed.
docker-env:
	test -f docker/.env || sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$(openssl rand -hex 16)/" \
		-e "s/^RAY_AUTH_TOKEN=.*/RAY_AUTH_TOKEN=$$(openssl rand -hex 32)/" docker/env.example > docker/.env

docker-build:
	docker build -f docker/Dockerfile -t grokforecast:cpu .

docker-build-cuda:
	docker build -f docker/Dockerfile -t grokforecast:cuda \
		--build-arg TORCH_SPEC=torch==2.13.0 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .

cluster-up: docker-env
	$(COMPOSE) up -d --wait --scale ray-worker=$(WORKERS)

cluster-sweep: docker-env
	$(COMPOSE) run --rm sweep grokforecast sweep $(STUDY) --backend ray

cluster-resume: docker-env
	$(COMPOSE) run --rm sweep grokforecast resume $(STUDY) --backend ray

cluster-down:
	$(COMPOSE) down
