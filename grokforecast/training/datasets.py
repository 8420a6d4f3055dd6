"""Datasets that grok: modular arithmetic tables, sparse parity and scikit-learn's digits.

Each dataset is built whole as tensors (no per-example Python) and split by a data
fraction and a seed. Batching is the trainer's business, not the dataset's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from grokforecast.errors import ConfigError

Operation = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _divide(x: torch.Tensor, y: torch.Tensor, p: int) -> torch.Tensor:
    inverse = torch.tensor([pow(v, p - 2, p) if v else 0 for v in range(p)])
    return (x * inverse[y]) % p


#: The operations of Power et al. 2022, keyed by how they are written.
OPERATIONS: dict[str, Operation] = {
    "x+y": lambda x, y, p: (x + y) % p,
    "x-y": lambda x, y, p: (x - y) % p,
    "x*y": lambda x, y, p: (x * y) % p,
    "x/y": _divide,
    "x^2+y^2": lambda x, y, p: (x * x + y * y) % p,
    "x^2+xy+y^2": lambda x, y, p: (x * x + x * y + y * y) % p,
}


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of a training and a validation set."""

    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    val_inputs: torch.Tensor
    val_labels: torch.Tensor


def modular_table(op: str, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs ``(x, y)`` of Z_p (``y != 0`` for division) and ``x op y mod p``.

    >>> inputs, labels = modular_table("x+y", 5)
    >>> inputs.shape, int(labels[7])  # (1, 2) -> 3
    (torch.Size([25, 2]), 3)
    """
    if op not in OPERATIONS:
        raise ConfigError(f"unknown operation op={op!r}; choose one of {sorted(OPERATIONS)}")
    if p < 2:
        raise ConfigError(f"modulus p={p} is too small; use a prime such as 59 or 97")
    if op == "x/y" and not is_prime(p):
        raise ConfigError(f"division needs a prime modulus but got p={p}; use e.g. 59 or 97")
    values = torch.arange(p)
    inputs = torch.cartesian_prod(values, values)
    if op == "x/y":
        inputs = inputs[inputs[:, 1] != 0]
    labels = OPERATIONS[op](inputs[:, 0], inputs[:, 1], p)
    return inputs, labels


def split_by_fraction(inputs: torch.Tensor, labels: torch.Tensor, data_fraction: float, seed: int) -> Split:
    """Shuffle with ``seed`` and keep ``data_fraction`` of the examples for training."""
    if not 0.0 < data_fraction < 1.0:
        raise ConfigError(f"data_fraction={data_fraction} must lie strictly between 0 and 1")
    n = len(labels)
    n_train = round(data_fraction * n)
    if not 0 < n_train < n:
        raise ConfigError(
            f"data_fraction={data_fraction} leaves an empty training or validation set "
            f"out of {n} examples; move it away from 0 and 1"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, val = order[:n_train], order[n_train:]
    return Split(inputs[train], labels[train], inputs[val], labels[val])


def digits_table() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (shipped with the package, no download), pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    inputs = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    return inputs, torch.tensor(digits.target, dtype=torch.long)


def sparse_parity_table(n_bits: int, k: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random strings of ``n_bits`` signs (+-1) labelled by the parity of the first ``k``.

    The (n, k) sparse parity of Barak et al. 2022 and Merrill et al. 2023: only ``k`` of the
    ``n_bits`` inputs matter, a network must find which, and with a finite training set and
    weight decay it memorizes first and generalizes late. The pool of strings is drawn
    with a fixed generator, so every run of a study sees the same pool and only the split
    (the run's seed) differs; strings are distinct whenever ``2 ** n_bits`` dwarfs ``size``.

    >>> inputs, labels = sparse_parity_table(n_bits=8, k=3, size=5)
    >>> inputs.shape, bool(((inputs[:, :3] < 0).sum(1) % 2 == labels).all())
    (torch.Size([5, 8]), True)
    """
    if not 1 <= k <= n_bits:
        raise ConfigError(f"sparse parity needs 1 <= k <= n_bits, got k={k}, n_bits={n_bits}")
    if size < 2:
        raise ConfigError(f"sparse parity needs a pool of at least 2 strings, got size={size}")
    bits = torch.randint(0, 2, (size, n_bits), generator=torch.Generator().manual_seed(0))
    labels = bits[:, :k].sum(1) % 2
    return 1.0 - 2.0 * bits.float(), labels
