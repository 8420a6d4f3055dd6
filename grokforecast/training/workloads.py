"""Workloads: a task, a model and a loss, registered by name.

A workload is a function ``(data_fraction, seed, **options) -> Problem`` registered with
:func:`register_workload`. The trainer, the corpus builder and the sweep look workloads
up by name only, so a workload of your own is used exactly like the built-in ones::

    import torch
    from grokforecast.training import Problem, register_workload, split_by_fraction

    @register_workload("parity")
    def parity(data_fraction: float, seed: int, n_bits: int = 10) -> Problem:
        inputs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * n_bits)
        labels = (inputs.sum(1) % 2).long()
        split = split_by_fraction(inputs, labels, data_fraction, seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(n_bits, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
        return Problem(model, split, num_classes=2, loss="cross_entropy")

Options are keyword arguments with defaults; the trainer passes ``workload_options``
through, and an option the function does not take is reported by name. The model is
built under the run's seed; the trainer applies the init scale, picks the device and
owns batching.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from grokforecast.errors import ConfigError

if TYPE_CHECKING:
    from grokforecast.training.config import TrainConfig
from grokforecast.training.datasets import (
    Split,
    digits_table,
    modular_table,
    sparse_parity_table,
    split_by_fraction,
)
from grokforecast.training.models import (
    ArithmeticGRU,
    ArithmeticTransformer,
    DigitsCNN,
    DigitsMLP,
    EmbeddingMLP,
    ParityMLP,
    QuadraticMLP,
)

LossKind = Literal["cross_entropy", "mse"]


@dataclass
class Problem:
    """What a workload hands the trainer.

    ``loss`` is ``"cross_entropy"`` on the logits, or ``"mse"`` between the logits and
    one-hot targets (the loss of Omnigrok and of the quadratic MLP).
    """

    model: nn.Module
    data: Split
    num_classes: int
    loss: LossKind = "cross_entropy"


WorkloadFactory = Callable[..., Problem]
_REGISTRY: dict[str, WorkloadFactory] = {}


def register_workload(name: str) -> Callable[[WorkloadFactory], WorkloadFactory]:
    """Register ``factory(data_fraction, seed, **options) -> Problem`` under ``name``."""

    def decorate(factory: WorkloadFactory) -> WorkloadFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def workload_names() -> list[str]:
    return sorted(_REGISTRY)


def workload_options(name: str) -> dict[str, Any]:
    """The options a workload takes, with their defaults."""
    parameters = list(inspect.signature(_lookup(name)).parameters.values())[2:]
    return {p.name: p.default for p in parameters}


def build_problem(
    name: str, data_fraction: float, seed: int, options: dict[str, Any] | None = None
) -> Problem:
    """Build the named workload, reporting unknown workloads and options by name."""
    factory = _lookup(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(workload_options(name)))
    if unknown:
        raise ConfigError(
            f"workload {name!r} has no option {unknown[0]!r}; "
            f"its options are {sorted(workload_options(name))}"
        )
    return factory(data_fraction, seed, **options)


def problem_for(config: TrainConfig) -> Problem:
    """The workload ``config`` names, built for its data fraction, seed and options."""
    return build_problem(config.workload, config.data_fraction, config.seed, config.workload_options)


def _lookup(name: str) -> WorkloadFactory:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown workload {name!r}; choose one of {workload_names()}")
    return _REGISTRY[name]


@register_workload("modular_mlp")
def modular_mlp(
    data_fraction: float,
    seed: int,
    op: str = "x+y",
    p: int = 59,
    embed_dim: int = 64,
    hidden: int = 256,
) -> Problem:
    """Embedding MLP with cross-entropy on ``x op y mod p``; groks on a CPU in minutes."""
    data = split_by_fraction(*modular_table(op, p), data_fraction, seed)
    return Problem(EmbeddingMLP(p, embed_dim, hidden), data, num_classes=p)


@register_workload("modular_quadratic")
def modular_quadratic(
    data_fraction: float, seed: int, op: str = "x+y", p: int = 97, width: int = 500
) -> Problem:
    """Quadratic MLP with MSE on one-hot targets (Gromov 2023): groks in a few hundred steps."""
    data = split_by_fraction(*modular_table(op, p), data_fraction, seed)
    return Problem(QuadraticMLP(p, width), data, num_classes=p, loss="mse")


@register_workload("modular_transformer")
def modular_transformer(
    data_fraction: float,
    seed: int,
    op: str = "x/y",
    p: int = 97,
    d_model: int = 128,
    n_heads: int = 4,
    n_layers: int = 2,
) -> Problem:
    """Power et al.'s 2-layer decoder-only transformer; meant for GPUs, slow on a CPU."""
    data = split_by_fraction(*modular_table(op, p), data_fraction, seed)
    model = ArithmeticTransformer(p, d_model, n_heads, n_layers)
    return Problem(model, data, num_classes=p)


@register_workload("modular_gru")
def modular_gru(
    data_fraction: float, seed: int, op: str = "x+y", p: int = 31, embed_dim: int = 32, hidden: int = 64
) -> Problem:
    """A GRU reading ``x op y =`` token by token, cross-entropy on the answer: a recurrent
    family, unlike the MLPs and the transformer."""
    data = split_by_fraction(*modular_table(op, p), data_fraction, seed)
    return Problem(ArithmeticGRU(p, embed_dim, hidden), data, num_classes=p)


@register_workload("sparse_parity")
def sparse_parity(
    data_fraction: float, seed: int, n_bits: int = 30, k: int = 3, size: int = 4000, hidden: int = 256
) -> Problem:
    """A one-hidden-layer MLP on (n_bits, k) sparse parity: a family unlike the others.

    No embedding, no modular structure, two classes: the training fraction of a fixed pool
    of ``size`` random strings; it memorizes the training strings quickly and finds the
    ``k`` relevant bits late, when weight decay has pruned the memorizing units.
    """
    data = split_by_fraction(*sparse_parity_table(n_bits, k, size), data_fraction, seed)
    return Problem(ParityMLP(n_bits, hidden), data, num_classes=2)


@register_workload("digits_mlp")
def digits_mlp(data_fraction: float, seed: int, width: int = 200) -> Problem:
    """Omnigrok on scikit-learn's digits: 3-layer MLP, MSE, few training images.

    Grokking needs a large init scale (``init_scale`` around 8) and weight decay.
    """
    data = split_by_fraction(*digits_table(), data_fraction, seed)
    return Problem(DigitsMLP(width), data, num_classes=10, loss="mse")


@register_workload("digits_cnn")
def digits_cnn(data_fraction: float, seed: int, channels: int = 8) -> Problem:
    """A small CNN on scikit-learn's digits, MSE: the image task with weights shared
    across the picture. Like ``digits_mlp`` it groks with a large ``init_scale``."""
    data = split_by_fraction(*digits_table(), data_fraction, seed)
    return Problem(DigitsCNN(channels), data, num_classes=10, loss="mse")
