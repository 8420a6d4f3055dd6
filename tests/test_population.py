"""A trial trained in a population trains as it would alone (real tiny trainings)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from grokforecast.errors import ConfigError
from grokforecast.training import RunStatus, TrainConfig, Trainer
from grokforecast.training.population import Population

warnings.filterwarnings("ignore", message="There is a performance drop")  # vmap over CPU attention

#: Every workload, small enough to train 60 steps in well under a second.
WORKLOADS = {
    "modular_mlp": {"workload_options": {"p": 23, "embed_dim": 16, "hidden": 32}},
    "modular_quadratic": {"workload_options": {"p": 23, "width": 64}},
    "modular_transformer": {"workload_options": {"p": 23, "d_model": 32, "n_heads": 2, "n_layers": 1}},
    "modular_gru": {"workload_options": {"p": 23, "embed_dim": 8, "hidden": 16}},
    "digits_mlp": {"workload_options": {"width": 64}, "init_scale": 8.0},
    "digits_cnn": {"workload_options": {"channels": 4}, "init_scale": 8.0},
    "sparse_parity": {"workload_options": {"n_bits": 12, "k": 3, "size": 600, "hidden": 64}},
}
SERIES = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")


def _configs(workload: str, *settings: dict) -> list[TrainConfig]:
    """Trials of ``workload`` with their own lr, weight decay, data fraction and seed."""
    base = {"workload": workload, "steps": 60, "eval_every": 10, "device": "cpu", **WORKLOADS[workload]}
    return [
        TrainConfig(
            **{
                **base,
                "lr": 1e-3 * (1 + i),
                "weight_decay": 0.1 * (1 + i),
                "data_fraction": 0.3 + 0.1 * i,
                "seed": i,
                "warmup_steps": 5 * i,
                **extra,
            }
        )
        for i, extra in enumerate(settings)
    ]


def _alone(config: TrainConfig, *segment_ends: int) -> Trainer:
    """``config`` trained alone, in segments ending at ``segment_ends`` (each evaluates)."""
    trainer = Trainer(config)
    for until in segment_ends:
        trainer.run(until=until)
    trainer.run()
    return trainer


def assert_same_curves(alone: Trainer, together: Trainer) -> None:
    """Equal to float tolerance; an accuracy may differ by one row whose logits tie within it."""
    one_row = {"train_acc": 1 / alone.batch_rows, "val_acc": 1 / len(alone.val_labels)}
    for series in SERIES:
        expected, got = np.array(getattr(alone.curves, series)), np.array(getattr(together.curves, series))
        assert got.shape == expected.shape, series
        if series in one_row:
            np.testing.assert_allclose(got, expected, atol=1.01 * one_row[series], err_msg=series)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=series)
    assert together.curves.eval_steps == alone.curves.eval_steps


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_workload_trains_in_a_population_as_it_would_alone(workload: str) -> None:
    configs = _configs(workload, {}, {}, {})
    together = [Trainer(config) for config in configs]
    population = Population(capacity=3)
    for trainer in together:
        population.admit(trainer)
    assert population.run(25) == population.run(35) == dict.fromkeys(range(3), RunStatus.REACHED)
    for config, trainer in zip(configs, together, strict=True):
        assert trainer.step == 60
        assert_same_curves(_alone(config, 25), trainer)


def test_slots_keep_their_own_data_fraction_batches_and_grokfast_filter() -> None:
    configs = _configs(
        "modular_mlp",
        {"grokfast": "ema", "grokfast_alpha": 0.9, "grokfast_lamb": 1.5},
        {"grokfast": "ma", "grokfast_window": 7, "grokfast_lamb": 3.0, "batch_size": 64},
        {"batch_size": 100},
        {"data_fraction": 0.8},
    )
    population = Population(capacity=4)
    together = [Trainer(config) for config in configs]
    for trainer in together:
        population.admit(trainer)
    population.run(60)
    assert len({len(t.train_labels) for t in together}) == 4  # four data fractions, padded in the stack
    for config, trainer in zip(configs, together, strict=True):
        assert_same_curves(_alone(config), trainer)


def test_a_stacked_batch_of_every_slot_out_of_slot_order_trains_each_on_its_own_data() -> None:
    """Batches are grouped by length: with data fractions falling from slot to slot, the one
    group holding every slot lists them longest last. Each slot must still be trained with
    its own parameters on its own rows (a group once took the whole stack in slot order)."""
    configs = _configs(
        "modular_mlp", {"data_fraction": 0.50}, {"data_fraction": 0.49}, {"data_fraction": 0.48}
    )
    together = [Trainer(config) for config in configs]
    population = Population(capacity=3)
    for trainer in together:
        population.admit(trainer)
    (group,) = population._batches([0, 1, 2])  # one group, in the stack's order
    assert group.slots == (0, 1, 2)
    population.run(60)
    for config, trainer in zip(configs, together, strict=True):
        assert_same_curves(_alone(config), trainer)


def test_slots_given_different_step_counts_wait_unchanged_while_the_others_train() -> None:
    configs = _configs("modular_mlp", {"grokfast": "ema"}, {"data_fraction": 0.7}, {"data_fraction": 0.2})
    population = Population(capacity=3)
    slots = [population.admit(Trainer(config)) for config in configs]
    population.run({slots[0]: 20, slots[1]: 45, slots[2]: 60})  # the first two wait, in turn
    assert [population.member(slot).step for slot in slots] == [20, 45, 60]
    population.run({slots[0]: 40, slots[1]: 15})
    for config, slot, segment_ends in zip(configs, slots, [(20,), (45,), ()], strict=True):
        assert_same_curves(_alone(config, *segment_ends), population.member(slot))


def test_a_released_slot_is_refilled_and_both_trials_go_on_as_alone(tmp_path: Path) -> None:
    first, second, newcomer = _configs("modular_mlp", {"grokfast": "ema"}, {}, {"grokfast": "ma"})
    population = Population(capacity=2)
    slots = [population.admit(Trainer(config)) for config in (first, second)]
    population.run(30)
    released = population.release(slots[0])  # pruned at step 30, say: its slot takes the next trial
    assert population.free == [slots[0]]
    refill = Trainer(newcomer)
    assert population.admit(refill) == slots[0]
    population.run(30)
    assert population.member(slots[1]).step == 60 and refill.step == 30
    released.run()  # the released trial goes on alone, from the state the population wrote into it
    assert_same_curves(_alone(first, 30), released)
    assert_same_curves(_alone(second, 30), population.member(slots[1]))
    population.export(slots[0]).save(tmp_path / "refill.pt")  # a checkpoint, as a lone trial writes it
    resumed = Trainer.resume(tmp_path / "refill.pt", newcomer)
    resumed.run()
    assert_same_curves(_alone(newcomer, 30), resumed)


def test_a_checkpointed_trial_resumes_into_a_population() -> None:
    config, other = _configs("modular_quadratic", {"grokfast": "ema"}, {})
    half = Trainer(config)
    half.run(until=30)
    population = Population(capacity=2)
    slot = population.admit(half)
    population.admit(Trainer(other))
    population.run(30)
    assert_same_curves(_alone(config), population.member(slot))


def test_a_diverging_slot_stops_alone_and_the_others_train_on() -> None:
    configs = _configs("modular_mlp", {"lr": 1e6, "warmup_steps": 0}, {})
    population = Population(capacity=2)
    exploding, steady = (population.admit(Trainer(config)) for config in configs)
    status = population.run(60)
    alone = _alone(configs[0])
    assert status == {exploding: RunStatus.DIVERGED, steady: RunStatus.REACHED}
    assert population.member(exploding).diverged_at == alone.diverged_at is not None
    assert_same_curves(_alone(configs[1]), population.member(steady))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workload_options": {"p": 23, "embed_dim": 16, "hidden": 64}}, "its model has other parameters"),
        ({"workload": "digits_mlp", "workload_options": {"width": 64}}, "its model has other parameters"),
        ({"grokfast": "ma", "grokfast_window": 9}, "its Grokfast window is 9, the population's 7"),
    ],
)
def test_a_trial_that_cannot_share_the_stack_is_refused_naming_why(settings: dict, message: str) -> None:
    (seed,) = _configs("modular_mlp", {"grokfast": "ma", "grokfast_window": 7})
    population = Population(capacity=3)
    population.admit(Trainer(seed))
    (misfit,) = _configs(settings.get("workload", "modular_mlp"), {})
    with pytest.raises(ConfigError, match=message):
        population.admit(Trainer(TrainConfig(**{**misfit.to_dict(), **settings})))
    with pytest.raises(ConfigError, match="capacity=0 must be at least 1"):
        Population(capacity=0)


def test_a_populations_work_is_counted_as_it_computes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench population`` counts a population's FLOPs as the stack computes them: the
    embedding MLP's lookup does less work than its matmul, and one counted step trains
    every member once without evaluating."""
    from grokforecast.bench.population import flops_per_step, flops_per_trial_step
    from grokforecast.training import models

    configs = _configs("modular_mlp", {}, {})
    counted = {}
    for way, threshold in (("lookup", 0), ("matmul", float("inf"))):
        monkeypatch.setattr(models, "LOOKUP_MIN_MACS", threshold)
        population = Population(capacity=2)
        members = [population.member(population.admit(Trainer(config))) for config in configs]
        population.run(10)
        counted[way] = flops_per_trial_step(population)
        assert [m.step for m in members] == [11, 11]
        assert [m.curves.eval_steps for m in members] == [[0, 10], [0, 10]]
    monkeypatch.setattr(models, "LOOKUP_MIN_MACS", float("inf"))
    lone = sum(flops_per_step(config) for config in configs) / len(configs)
    assert counted["matmul"] >= lone  # the shorter training set is padded, not skipped
    assert counted["lookup"] < 0.6 * counted["matmul"]
