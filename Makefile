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
	docker-env docker-build docker-build-cuda cluster-wheels cluster-base cluster-image \
	cluster-engine cluster-test cluster-up cluster-up-ray cluster-sweep cluster-resume cluster-down

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
# The engine is docker where a docker daemon answers, else podman (with podman-compose);
# the compose file is the same for both.
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
COMPOSE ?= $(if $(filter podman,$(ENGINE)),podman-compose,docker compose) -p grokforecast -f docker/compose.yaml
STUDY ?= studies/quickstart.toml
WORKERS ?= 2
# Offline images (make cluster-image): a Debian base from debootstrap, wheels from the host.
DEBIAN_MIRROR ?= http://deb.debian.org/debian
LOCAL_BASE := grokforecast-base:bookworm

# docker/.env holds the cluster's secrets (a fresh random password and Ray token); never committed.
docker-env:
	test -f docker/.env || sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$(openssl rand -hex 16)/" \
		-e "s/^RAY_AUTH_TOKEN=.*/RAY_AUTH_TOKEN=$$(openssl rand -hex 32)/" docker/env.example > docker/.env

docker-build:
	$(ENGINE) build -f docker/Dockerfile -t grokforecast:cpu .

docker-build-cuda:
	$(ENGINE) build -f docker/Dockerfile -t grokforecast:cuda \
		--build-arg TORCH_SPEC=torch==2.13.0 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .

# Every wheel the image installs, fetched by the host (a container need not reach PyPI).
cluster-wheels: install
	$(BIN)/python -m pip wheel --quiet --wheel-dir docker/wheels pip "$(TORCH_SPEC)" ".[ray,postgres,parquet]"
	rm -f docker/wheels/grokforecast-*.whl

# A Debian base image built here (debootstrap, as root), for machines that reach no registry.
cluster-base:
	$(ENGINE) image inspect $(LOCAL_BASE) >/dev/null 2>&1 || { \
		rootfs=$$(mktemp -d) && \
		debootstrap --variant=minbase --include=python3,python3-venv,make,ca-certificates \
			bookworm $$rootfs $(DEBIAN_MIRROR) >/dev/null && \
		tar -C $$rootfs -c . | $(ENGINE) import - $(LOCAL_BASE) && rm -rf $$rootfs; }

# The cluster's images, offline: grokforecast on the local base from the wheelhouse, and
# PostgreSQL from Debian's package (COMPOSE then runs them: see docker/env.example).
cluster-image: cluster-wheels cluster-base
	$(ENGINE) build -f docker/Dockerfile -t grokforecast:cpu \
		--build-arg BASE_IMAGE=$(LOCAL_BASE) --build-arg OFFLINE=1 .
	$(ENGINE) build -f docker/postgres/Dockerfile -t grokforecast-postgres:15 \
		--build-arg BASE_IMAGE=$(LOCAL_BASE) .

# A container engine: docker where its daemon answers, else podman, set up on Debian.
cluster-engine:
	docker info >/dev/null 2>&1 || sh docker/setup-podman.sh

# The cluster run for real: built, swept, a worker killed and one stopped, resumed, checked.
cluster-test: install cluster-engine
	$(BIN)/python -m pytest -m cluster tests/test_cluster.py

# Services are named: podman-compose 1.0 (Debian 12's) ignores profiles.
cluster-up: docker-env
	STUDY=$(STUDY) WORKERS=$(WORKERS) $(COMPOSE) up -d postgres dashboard worker

# Ray Tune instead of grokforecast's workers: a Ray head and $(WORKERS) Ray workers.
cluster-up-ray: docker-env
	$(COMPOSE) up -d postgres dashboard ray-head
	$(COMPOSE) up -d --scale ray-worker=$(WORKERS) ray-worker

cluster-sweep: docker-env
	SWEEP=sweep STUDY=$(STUDY) $(COMPOSE) run --rm sweep

cluster-resume: docker-env
	SWEEP=resume STUDY=$(STUDY) $(COMPOSE) run --rm sweep

cluster-down:
	$(COMPOSE) down
