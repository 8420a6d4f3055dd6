"""The pruner replay: recorded runs through real Optuna studies, scored against an oracle."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from grokforecast.backends.optuna.monitor import active_history_source
from grokforecast.bench.baselines import FallingValLossPruner, TopValAccPruner
from grokforecast.bench.replay import (
    RECORD_PARAM,
    Budget,
    OraclePruner,
    Stopper,
    borderline,
    compare,
    oracle_steps,
    replay,
    replay_objective,
    summarize_counts,
)
from grokforecast.bench.replay_report import markdown_table, write_figure
from grokforecast.corpus import load_corpus
from grokforecast.history import History
from studies import GROKFORECAST

CORPUS = "quadratic_add97"  # the cheapest shipped corpus: 600-step runs


@pytest.fixture(scope="module")
def records():
    records = load_corpus(CORPUS)
    grokking = [r for r in records if r.grokked][:4]
    others = [r for r in records if not r.grokked][:4]
    return grokking + others


class HistoryRecorder(BasePruner):
    """Never prunes; keeps what a pruner in this process sees at each of its checks."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[int, dict[str, np.ndarray]]] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        source = active_history_source(study.study_name, trial.number)
        self.seen.setdefault(trial.number, {})[trial.last_step] = source.history(until=trial.last_step)
        return False


def test_a_replayed_trial_reports_the_recorded_values_and_curves(records) -> None:
    record = records[0]
    budget = Budget.of(records, 0.1)
    recorder = HistoryRecorder()
    stopper = Stopper("recorder", lambda: recorder, "val_acc", dense=True)
    study = optuna.create_study(direction="maximize", pruner=recorder)
    study.enqueue_trial(
        {RECORD_PARAM: 0, **{k: record.config[k] for k in ("lr", "weight_decay", "data_fraction")}}
    )
    study.optimize(replay_objective(records, stopper, budget), n_trials=1)

    (trial,) = study.trials
    curves = record.curves
    # The intermediate values are the recorded validation accuracies, at the recorded steps.
    assert list(trial.intermediate_values) == [int(s) for s in curves.eval_steps]
    assert list(trial.intermediate_values.values()) == curves.val_acc
    assert trial.value == curves.val_acc[-1] and trial.user_attrs["steps_trained"] == budget.full
    # At the probe the pruner sees exactly the recorded history up to the probe step.
    seen = recorder.seen[0][budget.probe]
    expected = History.from_curves(curves, until=budget.probe)
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm"):
        np.testing.assert_array_equal(seen[name], expected[name])
    np.testing.assert_array_equal(seen["val_acc_steps"], expected["val_acc_steps"])
    np.testing.assert_array_equal(seen["train_loss_steps"], np.arange(budget.probe + 1))


def test_the_oracle_spends_its_formula_and_keeps_every_grokking_run(records) -> None:
    budget = Budget.of(records, 0.1)
    assert (budget.full, budget.probe) == (600, 60)
    oracle = Stopper("oracle", lambda: OraclePruner(records, budget.probe), "val_acc")
    outcome = replay(records, oracle, budget, order_seed=3)
    assert outcome.steps == oracle_steps(records, budget) == 8 * 60 + 4 * (600 - 60)
    assert outcome.recall == 1.0 and outcome.specificity == 1.0
    unpruned = replay(records, Stopper("none", optuna.pruners.NopPruner, "val_acc"), budget, order_seed=3)
    assert unpruned.steps == unpruned.steps_unpruned == 8 * 600 and unpruned.recall == 1.0
    assert unpruned.non_grokking_stopped == 0
    # The first grokking run is found after the runs before it, at its grok step.
    assert (
        outcome.steps_to_first_grok is not None
        and outcome.steps_to_first_grok <= unpruned.steps_to_first_grok
    )


def test_every_stopper_replays_the_same_trials_and_the_table_shows_the_spread(
    records, tmp_path: Path
) -> None:
    calibration = [r for name in ("mlp_add59", "digits_omnigrok") for r in load_corpus(name)]
    outcomes = compare({CORPUS: records}, orders=2, calibration=calibration)
    stoppers = list(dict.fromkeys(o.stopper for o in outcomes))
    assert len(stoppers) == 15 and len(outcomes) == 30
    assert any(name.startswith("HjorthPruner (held-out") for name in stoppers)
    for outcome in outcomes:
        assert outcome.trials == 8 and outcome.grokking == 4
        assert outcome.steps_oracle == 8 * 60 + 4 * 540
        assert 8 * 60 <= outcome.steps <= outcome.steps_unpruned  # every stopper waits for the probe
        assert outcome.best_value is None or 0.0 <= outcome.best_value <= 1.0  # a validation accuracy
        # Only the forecasting stopper records a P(grok) at the probe to score.
        assert (outcome.auc is not None) == outcome.stopper.startswith("HjorthPruner")
    table = markdown_table(outcomes)
    assert table.count(f"| {CORPUS} |") == 15
    figure = write_figure(outcomes, tmp_path / "replay.html")
    assert "plotly" in figure.read_text() and figure.stat().st_size > 1_000_000  # plotly.js inlined


def test_bench_replay_prints_the_table(tmp_path: Path) -> None:
    shown = subprocess.run(
        [
            *GROKFORECAST,
            "bench",
            "replay",
            "--corpus",
            CORPUS,
            "--orders",
            "1",
            "--figure",
            str(tmp_path / "f.html"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line for line in shown.stdout.splitlines() if line.startswith(f"| {CORPUS} |")]
    assert len(rows) == 15 and (tmp_path / "f.html").exists()
    oracle = next(row for row in rows if "oracle" in row).split(" | ")
    # recall and kept outside the label band, kept in it, stopped, x oracle
    grokking = [r for r in load_corpus(CORPUS) if r.grokked]
    band = sum(borderline(r) for r in grokking)
    clear = len(grokking) - band
    assert oracle[2:6] == ["1.00", f"{clear} / {clear}", f"{band} / {band}", "1.00"]
    assert oracle[7] == "1.00"


def test_a_replay_is_reproducible_even_under_hyperband(records) -> None:
    budget = Budget.of(records, 0.1)
    hyperband = Stopper(
        "hyperband",
        lambda: optuna.pruners.HyperbandPruner(min_resource=budget.probe, max_resource=budget.full),
        "val_acc",
    )
    assert replay(records, hyperband, budget, order_seed=1, corpus=CORPUS) == replay(
        records, hyperband, budget, order_seed=1, corpus=CORPUS
    )


def test_runs_whose_label_turns_on_a_few_examples_are_counted_apart(records) -> None:
    grokking, other = records[0], records[-1]
    assert grokking.grokked and not borderline(grokking) and not borderline(other)
    capped = [min(v, 0.955) for v in grokking.curves.val_acc]  # peaks just past 0.95
    near = dataclasses.replace(grokking, curves=dataclasses.replace(grokking.curves, val_acc=capped))
    assert near.grokked and borderline(near)
    outcome = summarize_counts([grokking, near, other], [600, 600, 60], "s", CORPUS, order=0, probe=60)
    assert (outcome.grokking, outcome.found, outcome.grokking_borderline, outcome.found_borderline) == (
        2,
        2,
        1,
        1,
    )
    assert outcome.recall_clear == 1.0
    missed = summarize_counts([grokking, near, other], [60, 600, 60], "s", CORPUS, order=0, probe=60)
    assert (missed.found_clear, missed.grokking_clear, missed.recall_clear) == (0, 1, 0.0)


def _constant_study(pruner: BasePruner, levels: list[float], full: int) -> optuna.Study:
    """A study whose trial i reports ``levels[i]`` every 10 steps up to ``full``."""
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        level = levels[trial.number]
        for step in range(0, full + 1, 10):
            trial.report(level, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return level

    study.optimize(objective, n_trials=len(levels))
    return study


def test_the_top_k_baseline_keeps_the_best_share_at_the_probe_once_warmed_up() -> None:
    levels = [0.1, 0.2, 0.3, 0.4, 0.9, 0.05, 0.25]
    study = _constant_study(TopValAccPruner(probe_step=50, share=1 / 3), levels, full=200)
    last_steps = [t.last_step for t in study.trials]
    # Four warm-up trials run on; then 0.9 ranks first, 0.05 last, 0.25 fifth of seven.
    assert last_steps == [200, 200, 200, 200, 200, 50, 50]


def test_the_falling_loss_baseline_keeps_exactly_the_trials_whose_loss_falls() -> None:
    study = optuna.create_study(pruner=FallingValLossPruner(probe_step=50))

    def objective(trial: optuna.Trial) -> float:
        for step in range(0, 201, 10):
            loss = 1.0 / (1 + step) if trial.number == 0 else 0.5 + step / 1000
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study.optimize(objective, n_trials=2)
    assert [t.last_step for t in study.trials] == [200, 50]
