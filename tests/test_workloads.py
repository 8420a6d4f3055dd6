import pytest
import torch

from grokforecast.errors import ConfigError
from grokforecast.training import (
    Problem,
    TrainConfig,
    Trainer,
    build_problem,
    register_workload,
    split_by_fraction,
    workload_names,
    workload_options,
)

TINY = {
    "modular_mlp": ({"p": 11, "embed_dim": 8, "hidden": 16}, {}),
    "modular_quadratic": ({"p": 11, "width": 32}, {}),
    "modular_transformer": ({"p": 7, "d_model": 16, "n_heads": 2, "n_layers": 1}, {}),
    "modular_gru": ({"p": 7, "embed_dim": 8, "hidden": 16}, {}),
    "digits_mlp": ({"width": 16}, {"init_scale": 2.0}),
    "digits_cnn": ({"channels": 4}, {"init_scale": 2.0}),
    "sparse_parity": ({"n_bits": 8, "k": 3, "size": 200, "hidden": 16}, {}),
}


def test_every_builtin_workload_has_a_tiny_case() -> None:
    assert set(TINY) <= set(workload_names())


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_workload_trains_and_its_loss_falls(name: str) -> None:
    options, settings = TINY[name]
    trainer = Trainer(
        TrainConfig(
            workload=name,
            workload_options=options,
            steps=30,
            eval_every=10,
            lr=1e-2,
            weight_decay=0.0,
            device="cpu",
            **settings,
        )
    )
    trainer.run()
    losses = trainer.curves.train_loss
    assert len(losses) == 30
    assert losses[-1] < 0.8 * losses[0]
    assert trainer.curves.eval_steps == [0, 10, 20, 30]


def test_init_scale_multiplies_every_weight() -> None:
    small = Trainer(TrainConfig(workload="digits_mlp", init_scale=1.0, device="cpu")).model
    large = Trainer(TrainConfig(workload="digits_mlp", init_scale=8.0, device="cpu")).model
    for a, b in zip(small.parameters(), large.parameters(), strict=True):
        torch.testing.assert_close(b, 8.0 * a)


def test_options_are_listed_and_unknown_ones_named() -> None:
    assert workload_options("modular_mlp") == {"op": "x+y", "p": 59, "embed_dim": 64, "hidden": 256}
    with pytest.raises(ConfigError, match="has no option 'width'"):
        build_problem("modular_mlp", 0.5, 0, {"width": 3})
    with pytest.raises(ConfigError, match="unknown workload 'mnist'"):
        build_problem("mnist", 0.5, 0)


def test_a_user_workload_trains_like_a_builtin_one() -> None:
    @register_workload("test_parity")
    def parity(data_fraction: float, seed: int, n_bits: int = 6) -> Problem:
        inputs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * n_bits)
        labels = (inputs.sum(1) % 2).long()
        model = torch.nn.Sequential(torch.nn.Linear(n_bits, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        return Problem(model, split_by_fraction(inputs, labels, data_fraction, seed), num_classes=2)

    trainer = Trainer(
        TrainConfig(
            workload="test_parity", workload_options={"n_bits": 5}, steps=20, eval_every=5, device="cpu"
        )
    )
    trainer.run()
    assert trainer.curves.eval_steps == [0, 5, 10, 15, 20]
    assert workload_options("test_parity") == {"n_bits": 6}


def _embedding_mlp_outputs(
    model: torch.nn.Module, stack: dict[str, torch.Tensor], pairs: torch.Tensor
) -> list[torch.Tensor]:
    """Logits alone, logits of the stack, and every gradient of their sum."""
    for tensor in (*model.parameters(), *stack.values()):
        tensor.grad = None
    alone, stacked = model(pairs[0]), model.forward_stacked(stack, pairs)
    (alone.square().sum() + stacked.square().sum()).backward()
    grads = [tensor.grad for tensor in (*model.parameters(), *stack.values())]
    return [alone.detach(), stacked.detach(), *grads]


def test_the_embedding_mlp_computed_as_a_lookup_equals_the_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup (above its size threshold) and the matmul (below) give the same logits
    and gradients, alone and for three stacked copies with their own parameters and rows."""
    from grokforecast.training import models

    torch.manual_seed(0)
    model = models.EmbeddingMLP(p=13, embed_dim=8, hidden=16)
    stack = {
        name: torch.stack([param.detach() * (1 + 0.5 * i) for i in range(3)]).requires_grad_()
        for name, param in model.named_parameters()
    }
    pairs = torch.randint(0, 13, (3, 40, 2))
    computed = {}
    for way, threshold in (("lookup", 0), ("matmul", float("inf"))):
        monkeypatch.setattr(models, "LOOKUP_MIN_MACS", threshold)
        computed[way] = _embedding_mlp_outputs(model, stack, pairs)
    for lookup, matmul in zip(computed["lookup"], computed["matmul"], strict=True):
        torch.testing.assert_close(lookup, matmul, rtol=1e-4, atol=1e-5)
    # Each copy is its own model on its own rows (no slot reads another's table).
    copy = models.EmbeddingMLP(p=13, embed_dim=8, hidden=16)
    copy.load_state_dict({name: tensor[2].detach() for name, tensor in stack.items()})
    torch.testing.assert_close(computed["lookup"][1][2], copy(pairs[2]).detach(), rtol=1e-5, atol=1e-6)
