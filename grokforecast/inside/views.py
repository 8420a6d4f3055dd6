"""What changed inside a model: the views of one snapshot of a trial, as numbers.

Each function takes what it needs (a module, a loss function of the parameters, an
embedding matrix) and returns plain arrays, so that the views are tested on planted
cases and drawn elsewhere (:mod:`grokforecast.viz.inside_figures`):

- :func:`representation_pca`: the token embeddings (or, for a model without one, the
  last hidden layer over the validation inputs) on their first principal components;
  a modular-arithmetic model's embedding folds into circles when it groks;
- :func:`fourier_power`: the embedding's power per frequency over the residues of a
  modular task; a generalizing solution concentrates it on a few key frequencies;
- :func:`layer_norms`: the L2 norm of every parameter tensor (Omnigrok's weight norm, per
  layer);
- :func:`loss_along`: the loss on the line ``theta + t * direction`` (from the initial
  weights through the current ones, or along the top Hessian eigenvector), all points in
  one vectorised call;
- :func:`top_hessian_eigen`: the top eigenvalue and eigenvector of the loss's Hessian by
  power iteration on Hessian-vector products (``torch.func.vjp`` of ``torch.func.grad``:
  reverse over reverse, which every model's operations support), never forming the
  Hessian;
- :func:`gradient_norm`: the norm of the loss's gradient.

Parameters travel as a flat vector with a :class:`Flat` that maps it back to the
module's named tensors, so every direction is a vector and every view runs on the
device the parameters are on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

#: A loss as a function of the flat parameter vector.
FlatLoss = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Flat:
    """The named parameters of a module as one vector, and back."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: nn.Module) -> Flat:
        named = dict(module.named_parameters())
        return cls(tuple(named), tuple(p.shape for p in named.values()))

    def vector(self, module: nn.Module) -> torch.Tensor:
        named = dict(module.named_parameters())
        return torch.cat([named[name].detach().reshape(-1) for name in self.names])

    def tensors(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [shape.numel() for shape in self.shapes]
        parts = torch.split(vector, sizes)
        return {
            name: part.reshape(shape)
            for name, part, shape in zip(self.names, parts, self.shapes, strict=True)
        }


def flat_loss(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[FlatLoss, torch.Tensor]:
    """The loss of ``module`` on ``inputs`` as a function of its flat parameters, and the
    current parameter vector. Buffers (a causal mask) are the module's own."""
    flat = Flat.of(module)
    buffers = dict(module.named_buffers())

    def of(vector: torch.Tensor) -> torch.Tensor:
        logits = functional_call(module, {**flat.tensors(vector), **buffers}, (inputs,))
        return loss(logits, targets)

    return of, flat.vector(module)


def gradient_norm(loss: FlatLoss, theta: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(grad(loss)(theta)))


def top_hessian_eigen(
    loss: FlatLoss, theta: torch.Tensor, iterations: int = 50, seed: int = 0, tolerance: float = 1e-4
) -> tuple[float, torch.Tensor]:
    """The eigenvalue of largest magnitude of the Hessian of ``loss`` at ``theta`` and its
    unit eigenvector, by power iteration (stops when the estimate moves by less than
    ``tolerance`` relative, or after ``iterations``)."""
    _, hvp = vjp(grad(loss), theta)  # hvp(v) = H v, H symmetric

    generator = torch.Generator().manual_seed(seed)
    vector = torch.randn(theta.shape, generator=generator).to(theta)
    vector = vector / torch.linalg.vector_norm(vector)
    eigenvalue = 0.0
    for _ in range(iterations):
        (product,) = hvp(vector)
        estimate = float(torch.dot(vector, product))
        norm = torch.linalg.vector_norm(product)
        if norm == 0:
            return 0.0, vector
        vector = product / norm
        if abs(estimate - eigenvalue) <= tolerance * max(abs(estimate), 1e-12):
            eigenvalue = estimate
            break
        eigenvalue = estimate
    return eigenvalue, vector


def loss_along(loss: FlatLoss, theta: torch.Tensor, direction: torch.Tensor, ts: np.ndarray) -> np.ndarray:
    """``loss(theta + t * direction)`` for every ``t`` in ``ts``, in one vectorised call."""
    points = theta + torch.as_tensor(ts, dtype=theta.dtype, device=theta.device)[:, None] * direction
    with torch.no_grad():
        return vmap(loss)(points).cpu().numpy()


def layer_norms(module: nn.Module) -> dict[str, float]:
    return {name: float(torch.linalg.vector_norm(p.detach())) for name, p in module.named_parameters()}


@dataclass(frozen=True)
class Projection:
    """Points on their first principal components, and the share of variance of each."""

    coordinates: np.ndarray  # (points, components)
    explained: np.ndarray  # (components,)


def representation_pca(points: torch.Tensor, components: int = 3) -> Projection:
    """Principal components of the rows of ``points`` (centred), by SVD."""
    centred = points.detach().double() - points.detach().double().mean(dim=0)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    components = min(components, singular.numel())
    variance = singular**2
    explained = (
        (variance / variance.sum()).cpu().numpy() if variance.sum() > 0 else np.zeros_like(variance.cpu())
    )
    coordinates = (centred @ right[:components].T).cpu().numpy()
    return Projection(coordinates, explained[:components])


def fourier_power(embedding: torch.Tensor) -> np.ndarray:
    """Share of the embedding's power at each frequency ``k = 0 .. p // 2`` over its ``p``
    rows (the residues), summed over the embedding dimensions; ``k`` and ``p - k`` are one
    frequency of a real signal. The constant part (``k = 0``) is reported, not removed."""
    rows = embedding.detach().double()
    spectrum = torch.fft.rfft(rows, dim=0).abs() ** 2  # (p // 2 + 1, dims)
    p = rows.shape[0]
    doubled = torch.ones(spectrum.shape[0], dtype=spectrum.dtype, device=spectrum.device)
    doubled[1 : (p + 1) // 2] = 2.0  # the mirrored half of a real signal's spectrum
    power = (spectrum.sum(dim=1) * doubled).cpu().numpy()
    total = power.sum()
    return power / total if total > 0 else power


def fourier_sparsity(power: np.ndarray, top: int = 5) -> float:
    """Share of the non-constant power in the ``top`` strongest frequencies (1: a few
    frequencies carry all of it)."""
    varying = np.sort(power[1:])[::-1]
    total = varying.sum()
    return float(varying[:top].sum() / total) if total > 0 else 0.0
