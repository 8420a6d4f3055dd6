"""Study files for tests: tiny sweeps that train in seconds, and the storages to run them on."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

GROKFORECAST = [str(Path(sys.executable).parent / "grokforecast")]


def study_text(
    name: str, n_trials: int = 3, threshold: float = 0.5, full_steps: int = 240, **extra: str
) -> str:
    """A sweep of tiny (x + y) mod 23 MLPs: a trial takes about a second."""
    return f"""
name = "{name}"
n_trials = {n_trials}
{extra.get("top", "")}

[sampler]
kind = "random"
seed = 1

[train]
workload = "modular_mlp"
workload_options = {{ p = 23, embed_dim = 16, hidden = 32 }}
eval_every = 10
device = "cpu"

[search]
lr = {{ low = 1e-3, high = 1e-2, log = true }}
weight_decay = {{ low = 0.1, high = 2.0, log = true }}
data_fraction = {{ low = 0.3, high = 0.8 }}

[budget]
probe_steps = 40
full_steps = {full_steps}
# a second look (later rungs) only where a test asks for one
rung_steps = []
hold_steps = 10000
checkpoint_every = 100

[pruner]
threshold = {threshold}
warm_up_keep_top = false
exploration = 0.0

[heartbeat]
heartbeat_interval = 1
grace_period = 3
"""


#: The database servers the tests also run on, when these variables hold their URLs.
SERVER_URL_VARIABLES = {
    "postgres": "GROKFORECAST_TEST_POSTGRES_URL",
    "mariadb": "GROKFORECAST_TEST_MARIADB_URL",
}


def storage_urls(tmp_path: Path) -> Iterator[tuple[str, str]]:
    yield "sqlite", f"sqlite:///{tmp_path / 'study.db'}"
    for name, variable in SERVER_URL_VARIABLES.items():
        if os.environ.get(variable):
            yield name, os.environ[variable]


def write_study(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
