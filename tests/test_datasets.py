import pytest
import torch

from grokforecast.errors import ConfigError
from grokforecast.training.datasets import (
    OPERATIONS,
    digits_table,
    modular_table,
    sparse_parity_table,
    split_by_fraction,
)

P = 7
EXPECTED = {
    "x+y": lambda x, y: (x + y) % P,
    "x-y": lambda x, y: (x - y) % P,
    "x*y": lambda x, y: (x * y) % P,
    "x/y": lambda x, y: next(z for z in range(P) if (z * y) % P == x),
    "x^2+y^2": lambda x, y: (x * x + y * y) % P,
    "x^2+xy+y^2": lambda x, y: (x * x + x * y + y * y) % P,
}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_operation_matches_the_arithmetic(op: str) -> None:
    inputs, labels = modular_table(op, P)
    expected = [EXPECTED[op](int(x), int(y)) for x, y in inputs]
    assert labels.tolist() == expected
    assert len(labels) == (P * (P - 1) if op == "x/y" else P * P)


def test_division_leaves_out_zero_divisors() -> None:
    inputs, _ = modular_table("x/y", P)
    assert bool((inputs[:, 1] != 0).all())


@pytest.mark.parametrize(
    ("op", "p", "message"),
    [("x%y", 7, "unknown operation op='x%y'"), ("x/y", 9, "prime modulus but got p=9"), ("x+y", 1, "p=1")],
)
def test_bad_tables_name_the_value(op: str, p: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("%", "%").replace("(", r"\(")):
        modular_table(op, p)


def test_split_is_disjoint_complete_and_seeded() -> None:
    inputs, labels = modular_table("x+y", P)
    split = split_by_fraction(inputs, labels, 0.3, seed=1)
    assert len(split.train_labels) == round(0.3 * P * P)
    pairs = {tuple(row) for row in split.train_inputs.tolist()} | {
        tuple(r) for r in split.val_inputs.tolist()
    }
    assert len(pairs) == P * P
    again = split_by_fraction(inputs, labels, 0.3, seed=1)
    other = split_by_fraction(inputs, labels, 0.3, seed=2)
    assert torch.equal(split.train_inputs, again.train_inputs)
    assert not torch.equal(split.train_inputs, other.train_inputs)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, 0.001])
def test_fractions_outside_the_open_interval_or_empty_sets_are_refused(fraction: float) -> None:
    inputs, labels = modular_table("x+y", P)
    with pytest.raises(ConfigError, match=f"data_fraction={fraction}"):
        split_by_fraction(inputs, labels, fraction, seed=0)


def test_digits_come_from_the_installed_package() -> None:
    inputs, labels = digits_table()
    assert inputs.shape == (1797, 64)
    assert float(inputs.max()) == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_sparse_parity_labels_the_parity_of_the_first_k_bits_of_one_fixed_pool() -> None:
    inputs, labels = sparse_parity_table(n_bits=30, k=3, size=4000)
    assert inputs.shape == (4000, 30) and set(inputs.unique().tolist()) == {-1.0, 1.0}
    negative_signs = (inputs[:, :3] < 0).sum(1)
    assert torch.equal(labels, negative_signs % 2) and 0.45 < labels.float().mean() < 0.55
    assert len({tuple(row) for row in inputs.tolist()}) == 4000  # distinct strings
    again, _ = sparse_parity_table(n_bits=30, k=3, size=4000)
    assert torch.equal(inputs, again)  # every run of a study draws from the same pool
    with pytest.raises(ConfigError, match="k=4, n_bits=3"):
        sparse_parity_table(n_bits=3, k=4, size=10)
