"""Shared fixtures: tiny training configurations that run in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grokforecast.training import TrainConfig
from studies import SERVER_URL_VARIABLES, storage_urls


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> TrainConfig:
    """Embedding MLP on (x + y) mod 11: memorizes within a hundred steps."""
    return TrainConfig(
        workload_options={"p": 11, "embed_dim": 16, "hidden": 32},
        lr=3e-3,
        steps=60,
        eval_every=10,
        device="cpu",
    )


@pytest.fixture(params=["sqlite", *SERVER_URL_VARIABLES])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    urls = dict(storage_urls(tmp_path))
    if request.param not in urls:
        pytest.skip(f"{SERVER_URL_VARIABLES[request.param]} is not set")
    return urls[request.param]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
