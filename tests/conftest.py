"""Shared fixtures: tiny training configurations that run in well under a second."""

from __future__ import annotations

import pytest
import torch

from grokforecast.training import TrainConfig


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
