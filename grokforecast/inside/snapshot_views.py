"""Every view of one snapshot of a trial (:mod:`grokforecast.inside.views`), for its workload.

:func:`views_of` takes a trainer restored from a snapshot and the trial's initial
weights (rebuilt from its configuration: the initialization is seeded) and returns a
:class:`SnapshotViews` of plain numbers, ready to cache as JSON and to draw.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from grokforecast.inside.views import (
    Flat,
    flat_loss,
    fourier_power,
    fourier_sparsity,
    gradient_norm,
    layer_norms,
    loss_along,
    representation_pca,
    top_hessian_eigen,
)
from grokforecast.training import Trainer
from grokforecast.training.trainer import loss_of

#: Points of each one-dimensional loss profile, and their range: the line from the
#: initial weights (t = 0) through the snapshot's (t = 1), a little beyond both ends.
LINE_POINTS = np.linspace(-0.25, 1.25, 31)
#: Steps along the top Hessian eigenvector, in units of the weights' norm.
EIGEN_POINTS = np.linspace(-0.05, 0.05, 31)
#: Validation rows whose last hidden layer a model without an embedding is drawn by.
HIDDEN_POINTS = 400


@dataclass(frozen=True)
class SnapshotViews:
    """The views of one snapshot (see :mod:`grokforecast.inside.views`)."""

    step: int
    #: What the representation is: "token embedding" or "last hidden layer".
    representation: str
    pca: list[list[float]]
    pca_explained: list[float]
    #: Labels of the PCA's points (the residue, or the validation label).
    pca_labels: list[int]
    #: Share of the embedding's power per frequency (modular tasks), else empty.
    fourier: list[float]
    fourier_sparsity: float | None
    layer_norms: dict[str, float]
    line_t: list[float]
    line_train_loss: list[float]
    line_val_loss: list[float]
    top_eigenvalue: float
    eigen_t: list[float]
    eigen_train_loss: list[float]
    gradient_norm: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotViews:
        return cls(**data)


def views_of(trainer: Trainer, initial: nn.Module) -> SnapshotViews:
    """Every view of ``trainer``'s current weights; ``initial`` is the same model at step 0.

    Attention runs on PyTorch's plain (math) kernel here: the fused CPU kernel has no
    second derivative, which Hessian-vector products need.
    """
    with sdpa_kernel(SDPBackend.MATH):
        return _views_of(trainer, initial)


def _views_of(trainer: Trainer, initial: nn.Module) -> SnapshotViews:
    started = time.perf_counter()
    model = trainer.model  # left in training mode: no dropout here, and no fused fast paths
    kind = trainer.loss_kind
    train_loss, theta = flat_loss(
        model, trainer.train_inputs, trainer.train_targets, lambda y, t: loss_of(y, t, kind)
    )
    val_loss, _ = flat_loss(model, trainer.val_inputs, trainer.val_targets, lambda y, t: loss_of(y, t, kind))
    theta0 = Flat.of(initial).vector(initial).to(theta)
    line = theta - theta0
    eigenvalue, eigenvector = top_hessian_eigen(train_loss, theta)
    scale = float(torch.linalg.vector_norm(theta))
    representation, points, labels = representation_of(trainer)
    power = (
        fourier_power(points)
        if representation == "token embedding" and trainer.config.workload.startswith("modular")
        else np.array([])
    )
    projection = representation_pca(points)
    views = SnapshotViews(
        step=trainer.step,
        representation=representation,
        pca=projection.coordinates.tolist(),
        pca_explained=projection.explained.tolist(),
        pca_labels=labels,
        fourier=power.tolist(),
        fourier_sparsity=fourier_sparsity(power) if power.size else None,
        layer_norms=layer_norms(model),
        line_t=LINE_POINTS.tolist(),
        line_train_loss=loss_along(train_loss, theta0, line, LINE_POINTS).tolist(),
        line_val_loss=loss_along(val_loss, theta0, line, LINE_POINTS).tolist(),
        top_eigenvalue=eigenvalue,
        eigen_t=EIGEN_POINTS.tolist(),
        eigen_train_loss=loss_along(train_loss, theta, eigenvector * scale, EIGEN_POINTS).tolist(),
        gradient_norm=gradient_norm(train_loss, theta),
        seconds=0.0,
    )
    return SnapshotViews(**{**views.to_dict(), "seconds": time.perf_counter() - started})


def representation_of(trainer: Trainer) -> tuple[str, torch.Tensor, list[int]]:
    """The token embedding of the operands (rows 0 .. p - 1) where the model has one,
    else the input of its last linear layer over the validation inputs."""
    model = trainer.model
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if embeddings:
        classes = int(model(trainer.val_inputs[:1]).shape[-1])  # p: the residues
        rows = torch.cat([e.weight.detach()[:classes] for e in embeddings], dim=1)
        return "token embedding", rows, list(range(classes))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            model(trainer.val_inputs[:HIDDEN_POINTS])
    finally:
        hook.remove()
    return "last hidden layer", captured[0], trainer.val_labels[:HIDDEN_POINTS].cpu().tolist()
