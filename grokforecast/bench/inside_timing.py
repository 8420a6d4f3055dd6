"""Time of each view inside a trial (:mod:`grokforecast.inside.views`), per snapshot.

For each shipped workload at the size its study file or corpus uses, a trainer runs a few
hundred steps (the snapshot), then each view is computed ``repeats`` times on the CPU and
its median time reported, with the whole :func:`~grokforecast.inside.snapshot_views.views_of`
(what ``grokforecast inspect`` pays per new snapshot) beside them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from grokforecast.inside import views as v
from grokforecast.inside.snapshot_views import EIGEN_POINTS, LINE_POINTS, representation_of, views_of
from grokforecast.training import TrainConfig, Trainer
from grokforecast.training.trainer import loss_of

#: The workloads timed, at the sizes of the shipped studies and corpora.
WORKLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "quickstart MLP (p = 59)": ("modular_mlp", {"p": 59}),
    "transformer (p = 59, d = 128, 2 layers)": ("modular_transformer", {"p": 59}),
    "sparse-parity MLP": ("sparse_parity", {}),
    "digits MLP (width 200)": ("digits_mlp", {}),
}


def time_views(steps: int = 200, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Median seconds of each view and of all of them, per workload."""
    table = {}
    for label, (workload, options) in WORKLOADS.items():
        config = TrainConfig(workload=workload, workload_options=options, steps=steps, eval_every=50, lr=1e-3)
        trainer = Trainer(config)
        trainer.run()
        initial = Trainer(config).model
        table[label] = _timed(trainer, initial, repeats)
    return table


def _timed(trainer: Trainer, initial: torch.nn.Module, repeats: int) -> dict[str, float]:
    kind = trainer.loss_kind
    with sdpa_kernel(SDPBackend.MATH):
        loss, theta = v.flat_loss(
            trainer.model, trainer.train_inputs, trainer.train_targets, lambda y, t: loss_of(y, t, kind)
        )
        theta0 = v.Flat.of(initial).vector(initial)
        _, points, _ = representation_of(trainer)
        _, eigenvector = v.top_hessian_eigen(loss, theta)
        runs: dict[str, Callable[[], object]] = {
            "PCA": lambda: v.representation_pca(points),
            "Fourier": lambda: v.fourier_power(points),
            "layer norms": lambda: v.layer_norms(trainer.model),
            "line from init": lambda: v.loss_along(loss, theta0, theta - theta0, LINE_POINTS),
            "top eigenvalue": lambda: v.top_hessian_eigen(loss, theta),
            "eigenvector line": lambda: v.loss_along(loss, theta, eigenvector, EIGEN_POINTS),
            "gradient norm": lambda: v.gradient_norm(loss, theta),
            "all (views_of)": lambda: views_of(trainer, initial),
        }
        return {name: _median_seconds(run, repeats) for name, run in runs.items()}


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
