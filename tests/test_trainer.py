import dataclasses
import math
from pathlib import Path

import pytest
import torch

from grokforecast.errors import CheckpointError, ConfigError
from grokforecast.training import (
    Problem,
    RunStatus,
    TrainConfig,
    Trainer,
    register_workload,
    resolve_device,
    split_by_fraction,
)
from grokforecast.training.accuracy import StepCounts, correct_count, correct_count_
from grokforecast.training.checkpoint import FORMAT, save_checkpoint


def _assert_same_run(a: Trainer, b: Trainer) -> None:
    assert a.step == b.step
    assert a.curves.train_loss == b.curves.train_loss
    assert a.curves.val_acc == b.curves.val_acc
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "variation",
    [{}, {"batch_size": 16}, {"grokfast": "ema"}, {"grokfast": "ma", "grokfast_window": 5}],
    ids=["full-batch", "mini-batch", "grokfast-ema", "grokfast-ma"],
)
def test_a_run_split_at_k_equals_an_unbroken_run_bit_for_bit(
    tiny_config: TrainConfig, variation: dict
) -> None:
    config = dataclasses.replace(tiny_config, **variation)
    unbroken = Trainer(config)
    unbroken.run()
    split = Trainer(config)
    split.run(until=30)
    split.run()
    _assert_same_run(unbroken, split)


def test_a_probe_continued_through_a_checkpoint_equals_an_unbroken_run(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(tiny_config, batch_size=16, grokfast="ema")
    unbroken = Trainer(config)
    unbroken.run()
    probe = Trainer(dataclasses.replace(config, steps=20))
    probe.run()
    probe.save(tmp_path / "probe.pt")
    continued = Trainer.resume(tmp_path / "probe.pt", config)
    assert continued.step == 20
    continued.run()
    _assert_same_run(unbroken, continued)


def test_a_checkpoint_of_another_run_is_refused_naming_the_setting(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    Trainer(tiny_config).save(tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"another run: lr=0\.003 \(this run: 0\.01\)"):
        Trainer.resume(tmp_path / "a.pt", dataclasses.replace(tiny_config, lr=1e-2))


def test_checkpoints_of_other_versions_and_garbage_are_refused(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    state = Trainer(tiny_config).state_dict()
    save_checkpoint(tmp_path / "old.pt", state)
    raw = torch.load(tmp_path / "old.pt", weights_only=True)
    torch.save({**raw, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        Trainer.resume(tmp_path / "future.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a grokforecast checkpoint"):
        Trainer.resume(tmp_path / "other.pt")
    tampered = {**raw, "step": raw["step"] + 1}  # contents that no longer match their digest
    torch.save(tampered, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="is corrupted: its contents do not match their checksum"):
        Trainer.resume(tmp_path / "tampered.pt")
    poisoned = {key: value for key, value in raw.items() if key not in ("format", "version", "sha256")}
    next(iter(poisoned["model"].values())).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", poisoned)  # a valid digest over NaN weights
    with pytest.raises(CheckpointError, match="holds NaN or infinite values in its model state"):
        Trainer.resume(tmp_path / "nan.pt")
    save_checkpoint(tmp_path / "partial.pt", {"step": 3})
    with pytest.raises(CheckpointError, match="lacks fingerprint, config, model, optimizer, curves"):
        Trainer.resume(tmp_path / "partial.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable grokforecast checkpoint"):
        Trainer.resume(tmp_path / "garbage.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Trainer.resume(tmp_path / "missing.pt")
    assert raw["format"] == FORMAT


def test_checkpoints_load_without_unpickling_code(tiny_config: TrainConfig, tmp_path: Path) -> None:
    Trainer(tiny_config).save(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["config"]["lr"] == tiny_config.lr


def test_a_nan_loss_stops_the_run_as_diverged_with_the_step(tiny_config: TrainConfig) -> None:
    trainer = Trainer(dataclasses.replace(tiny_config, lr=1e6, warmup_steps=0))
    status = trainer.run()
    assert status is RunStatus.DIVERGED
    assert trainer.diverged_at is not None and trainer.diverged_at < tiny_config.eval_every * 2
    assert trainer.step <= trainer.diverged_at + tiny_config.eval_every
    assert trainer.run() is RunStatus.DIVERGED  # it cannot be continued


def test_evaluations_at_the_interval_and_at_the_end_of_every_segment(tiny_config: TrainConfig) -> None:
    trainer = Trainer(dataclasses.replace(tiny_config, steps=25))
    trainer.run(until=15)
    trainer.run()
    assert trainer.curves.eval_steps == [0, 10, 15, 20, 25]
    assert len(trainer.curves.weight_norm) == 5
    assert trainer.curves.train_set_acc == []  # full batch: train_acc already is the set's


def test_mini_batch_runs_also_evaluate_the_whole_training_set(tiny_config: TrainConfig) -> None:
    trainer = Trainer(dataclasses.replace(tiny_config, batch_size=8))
    trainer.run()
    assert len(trainer.curves.train_set_acc) == len(trainer.curves.eval_steps)


def test_a_small_quadratic_model_really_groks() -> None:
    config = TrainConfig(
        workload="modular_quadratic",
        workload_options={"p": 23, "width": 200},
        lr=1e-2,
        weight_decay=1.0,
        data_fraction=0.6,
        steps=400,
        eval_every=10,
        device="cpu",
    )
    trainer = Trainer(config)
    trainer.run()
    times = trainer.grok_times()
    assert times.grokked and times.t2 is not None
    assert times.t4 > times.t2 + 100  # memorized first, generalized much later


def test_device_auto_picks_what_exists() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")


def test_correct_count_agrees_with_argmax_and_counts_ties_as_wrong() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 97, generator=generator)
    labels = torch.randint(0, 97, (500,), generator=generator)
    labels[:100] = logits[:100].argmax(dim=-1)  # some rows right
    assert correct_count(logits, labels).item() == (logits.argmax(dim=-1) == labels).sum().item() >= 100
    collapsed = torch.zeros(4, 5)  # every logit equal: argmax would call label 0 right
    assert correct_count(collapsed, torch.tensor([0, 1, 2, 0])).item() == 0
    kept = logits.clone()
    assert correct_count_(kept, labels).item() == correct_count(logits, labels).item()
    label_entries = torch.zeros_like(kept, dtype=torch.bool).scatter(1, labels[:, None], True)
    assert torch.equal(kept.isinf(), label_entries)  # only the label entries overwritten


@pytest.mark.parametrize("batch_bytes", [0, 3000, 1 << 30], ids=["each-step", "in-pairs", "all-together"])
def test_step_counts_batched_equal_counts_step_by_step(batch_bytes: int) -> None:
    generator = torch.Generator().manual_seed(0)
    steps = [(torch.randn(30, 11, generator=generator), torch.randint(0, 11, (30,), generator=generator))]
    steps += [(torch.zeros(30, 11), torch.zeros(30, dtype=torch.long))] * 2  # collapsed: all ties
    steps += [(logits.clone(), logits.argmax(dim=1)) for logits, _ in steps[:1]] * 4  # all right
    counts = StepCounts(batch_bytes)
    taken = []
    for index, (logits, labels) in enumerate(steps):
        counts.add(logits.clone(), labels)
        if index in (2, 3):  # an evaluation interval ends
            taken += counts.take().tolist()
    taken += counts.take().tolist()
    assert (
        taken
        == [correct_count(logits, labels).item() for logits, labels in steps]
        == [1, 0, 0, 30, 30, 30, 30]
    )
    assert counts.take().tolist() == []
    for rows in (3, 3, 5, 5, 5):  # steps of two shapes are never concatenated
        counts.add(torch.eye(rows, 4), torch.zeros(rows, dtype=torch.long))
    assert counts.take().tolist() == [1, 1, 1, 1, 1]


def test_the_trainer_counts_in_place_only_on_logits_the_forward_computed() -> None:
    # The training accuracy is counted in place on the logits (their label entries are
    # overwritten), which must not reach a model whose output is a view of a parameter.
    class LogitTable(torch.nn.Module):
        def __init__(self, rows: int, classes: int) -> None:
            super().__init__()
            self.table = torch.nn.Parameter(torch.randn(rows, classes))

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            return self.table[: len(rows)]

    @register_workload("test_logit_table")
    def logit_table(data_fraction: float, seed: int) -> Problem:
        inputs, labels = torch.arange(1024)[:, None], torch.arange(1024) % 512
        return Problem(LogitTable(1024, 512), split_by_fraction(inputs, labels, data_fraction, seed), 512)

    trainer = Trainer(TrainConfig(workload="test_logit_table", steps=5, eval_every=5, device="cpu"))
    assert trainer.train_inputs.shape == (512, 1)  # 512 x 512 logits: 1 MB, counted step by step
    assert trainer.run() is RunStatus.REACHED
    assert trainer.model.table.isfinite().all() and all(map(math.isfinite, trainer.curves.train_loss))
