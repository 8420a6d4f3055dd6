"""The views inside a trial, on cases whose answer is known, and on every workload."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from grokforecast.inside.snapshot_views import views_of
from grokforecast.inside.snapshots import snapshot_files
from grokforecast.inside.views import (
    fourier_power,
    fourier_sparsity,
    gradient_norm,
    loss_along,
    representation_pca,
    top_hessian_eigen,
)
from grokforecast.sweep.plan import SweepPlan
from grokforecast.training import TrainConfig, Trainer
from studies import GROKFORECAST, study_text, write_study


def _planted_circle(p: int, frequency: int, dims: int = 16, noise: float = 0.0) -> torch.Tensor:
    """Rows n = 0 .. p-1 on a circle at ``frequency``, rotated into ``dims`` dimensions."""
    angles = 2 * math.pi * frequency * torch.arange(p, dtype=torch.float64) / p
    plane = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    rotation, _ = torch.linalg.qr(
        torch.randn(dims, dims, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    )
    rows = plane @ rotation[:2]
    return rows + noise * torch.randn(
        rows.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )


def test_the_pca_of_a_planted_circle_is_that_circle() -> None:
    projection = representation_pca(_planted_circle(p=31, frequency=3, noise=1e-3))
    radii = np.linalg.norm(projection.coordinates[:, :2], axis=1)
    assert projection.explained[:2].sum() > 0.999 and abs(projection.explained[0] - 0.5) < 0.01
    assert radii.std() / radii.mean() < 0.01  # every residue on one circle
    angles = np.unwrap(np.arctan2(projection.coordinates[:, 1], projection.coordinates[:, 0]))
    steps = np.diff(angles)
    assert np.allclose(np.abs(steps), 2 * math.pi * 3 / 31, atol=1e-2)  # in order, 3 turns


def test_the_fourier_power_of_a_planted_frequency_is_all_at_that_frequency() -> None:
    power = fourier_power(_planted_circle(p=31, frequency=7))
    assert power.shape == (16,) and power.sum() == pytest.approx(1.0)
    assert power[7] == pytest.approx(1.0, abs=1e-9) and fourier_sparsity(power, top=1) == pytest.approx(1.0)
    mixed = fourier_power(_planted_circle(p=31, frequency=2) + _planted_circle(p=31, frequency=5))
    assert mixed[2] + mixed[5] == pytest.approx(1.0, abs=1e-9) and fourier_sparsity(mixed, top=1) < 0.6


def test_the_top_hessian_eigenvalue_of_a_quadratic_loss_is_its_largest_curvature() -> None:
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=generator))
    curvatures = torch.tensor([9.0, 4.0, 2.5, *[1.0] * 9], dtype=torch.float64)
    hessian = basis @ torch.diag(curvatures) @ basis.T

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * theta @ hessian @ theta

    theta = torch.randn(12, dtype=torch.float64, generator=generator)
    eigenvalue, eigenvector = top_hessian_eigen(loss, theta, iterations=200, tolerance=1e-12)
    assert eigenvalue == pytest.approx(9.0, rel=1e-6)
    assert abs(float(eigenvector @ basis[:, 0])) == pytest.approx(1.0, abs=1e-5)
    assert gradient_norm(loss, theta) == pytest.approx(float(torch.linalg.vector_norm(hessian @ theta)))
    ts = np.linspace(-1, 1, 5)
    along = loss_along(loss, torch.zeros(12, dtype=torch.float64), eigenvector, ts)
    assert np.allclose(along, 0.5 * 9.0 * ts**2)  # the parabola of that curvature


@pytest.mark.parametrize(
    ("workload", "options", "representation"),
    [
        ("modular_mlp", {"p": 23, "embed_dim": 16, "hidden": 32}, "token embedding"),
        ("modular_quadratic", {"p": 23, "width": 64}, "token embedding"),
        ("modular_transformer", {"p": 23, "d_model": 32, "n_heads": 2, "n_layers": 1}, "token embedding"),
        ("modular_gru", {"p": 23, "embed_dim": 8, "hidden": 16}, "token embedding"),
        ("sparse_parity", {"n_bits": 8, "hidden": 32}, "last hidden layer"),
        ("digits_mlp", {"width": 32}, "last hidden layer"),
        ("digits_cnn", {"channels": 4}, "last hidden layer"),
    ],
)
def test_every_workload_gets_every_view_that_applies(
    workload: str, options: dict, representation: str
) -> None:
    config = TrainConfig(workload=workload, workload_options=options, steps=30, eval_every=10, lr=1e-3)
    trainer = Trainer(config)
    trainer.run()
    views = views_of(trainer, Trainer(config).model)
    assert views.step == 30 and views.representation == representation
    assert len(views.pca) == len(views.pca_labels) and len(views.pca[0]) == 3
    assert bool(views.fourier) == workload.startswith("modular")  # residues have frequencies
    # The line from the initial weights passes through the snapshot's at t = 1, where its
    # loss is the trainer's own; along it, training lowered the loss.
    at_one = views.line_t.index(1.0)
    assert views.line_train_loss[at_one] < views.line_train_loss[views.line_t.index(0.0)]
    assert math.isfinite(views.top_eigenvalue) and views.gradient_norm > 0
    assert views.eigen_train_loss[len(views.eigen_t) // 2] == pytest.approx(
        views.line_train_loss[at_one], rel=1e-4
    )
    assert set(views.layer_norms) == {name for name, _ in trainer.model.named_parameters()}


def test_kept_trials_keep_snapshots_and_inspect_draws_and_caches_their_views(tmp_path: Path) -> None:
    text = study_text("inside", n_trials=2, threshold=0.0, full_steps=400).replace(
        "checkpoint_every = 100", "checkpoint_every = 100\nsnapshots = 2"
    )
    path = write_study(tmp_path, text)
    sweep = subprocess.run([*GROKFORECAST, "sweep", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    plan = SweepPlan.load(path)
    # Kept (threshold 0): the probe (40), the first segment end past half the budget, the end.
    folder = tmp_path / plan.snapshot_dir / "trial-0"
    assert [step for step, _ in snapshot_files(folder)] == [40, 240, 400]
    shown = subprocess.run(
        [*GROKFORECAST, "inspect", str(path), "--trial", "0"], capture_output=True, text=True, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        "3 snapshots (3 computed now, 0 cached)" in shown.stdout and "top Hessian eigenvalue" in shown.stdout
    )
    page = (tmp_path / "runs" / "study" / "inside" / "trial-0.html").read_text()
    for figure in ("inside-representation", "inside-fourier", "inside-landscape", "inside-norms"):
        assert f'id="{figure}"' in page
    again = subprocess.run(
        [*GROKFORECAST, "inspect", str(path), "--trial", "0"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "(0 computed now, 3 cached)" in again.stdout  # nothing changed: nothing recomputed
    (folder / "step-240.pt").touch()  # a snapshot that changes is computed again, alone
    third = subprocess.run(
        [*GROKFORECAST, "inspect", str(path), "--trial", "0"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "(1 computed now, 2 cached)" in third.stdout
    missing = subprocess.run(
        [*GROKFORECAST, "inspect", str(path), "--trial", "7"], capture_output=True, text=True, cwd=tmp_path
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "no trial 7" in missing.stderr
