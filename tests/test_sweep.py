"""The sweep: study files, the study database, real tiny sweeps, crashes and resumes."""

from __future__ import annotations

import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from grokforecast import HjorthPruner
from grokforecast.backends.optuna.objective import worker_identity
from grokforecast.backends.optuna.workers import reap_dead_trials, retry_interrupted, run_worker
from grokforecast.bench.faults import worker_processes
from grokforecast.core.policy import KEEP_ODDS, StudyContext
from grokforecast.errors import ConfigError, GrokforecastError
from grokforecast.history import History, hyperparameters_from
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.populations import AUTO_SIZES, choose_population
from grokforecast.sweep.progress import ProgressLines, trial_line
from grokforecast.sweep.spec import load_study_spec
from grokforecast.sweep.storage import (
    misread_absolute_path,
    open_storage,
    read_curves,
    write_curve_segment,
)
from grokforecast.sweep.study import create_study, suggest
from grokforecast.sweep.summary import report_text, summarize
from grokforecast.training import Trainer
from grokforecast.viz.study_data import trial_view
from grokforecast.vocabulary import DECISION_ATTR, RUNG_DECISIONS_ATTR, SURPLUS_ATTR, WORKER_ATTR
from studies import GROKFORECAST, study_text, write_study

# -- study files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "rungs"),
    [
        ("probe_steps = 40", (60, 120)),  # the second look at 25 % and 50 % of 240 steps
        ("probe_steps = 80", (120,)),  # a rung at or before the probe is dropped
        ("probe_steps = 130", ()),
        ("probe_steps = 40\nrung_steps = []", ()),  # turned off
        ("probe_steps = 40\nrung_steps = [200]", (200,)),
    ],
)
def test_a_study_file_without_rungs_takes_a_second_look_at_a_quarter_and_half_the_budget(
    tmp_path: Path, budget: str, rungs: tuple[int, ...]
) -> None:
    text = study_text("rungs").replace("rung_steps = []\n", "").replace("probe_steps = 40", budget)
    spec = load_study_spec(write_study(tmp_path, text))
    probe = spec.budget.probe_steps
    assert spec.budget.judged_at == (probe, *rungs)
    assert spec.policy_settings().rungs == rungs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("n_trials = 3", "n_trials = 3\nn_trails = 4"), "n_trails: unknown key"),
        (("n_trials = 3", 'n_trials = "three"'), "n_trials: Input should be a valid integer"),
        (
            ("low = 1e-3, high = 1e-2", "low = 1e-2, high = 1e-3"),
            "search.lr: low=0.01 is greater than high=0.001",
        ),
        (
            ("low = 0.1, high = 2.0, log = true", "low = 0.0, high = 2.0, log = true"),
            "a log range must be > 0",
        ),
        (
            ('device = "cpu"', 'device = "cpu"\nlearning_rate = 1.0'),
            "train.learning_rate is not a training setting",
        ),
        (("probe_steps = 40", "probe_steps = 400"), "probe_steps=400 must be below full_steps=240"),
        (('kind = "random"', 'kind = "bayes"'), "sampler.kind: Input should be"),
        (('kind = "random"', 'kind = "grid"'), "the grid sampler needs search.lr.grid"),
        (("p = 23", "p = 22, op = 'x/y'"), "study.toml: "),
        (("[budget]", "[budget\n"), "is not valid TOML"),
        (('name = "bad"', 'name = "../bad"'), "name: '../bad' may hold only letters, digits"),
        (
            ("data_fraction = { low = 0.3, high = 0.8 }", "data_fraction = { choices = [0.6, 1.3] }"),
            r"search.data_fraction reaches 1.3, where data_fraction=1.3 must lie strictly between 0 and 1",
        ),
        (("threshold = 0.5", "threshold = 1.5"), r"pruner: threshold=1.5 must lie in \[0, 1\]"),
        (
            ("threshold = 0.5", 'threshold = 0.5\nfitted_without = ["transformer"]'),
            r"pruner: fitted_without=\('transformer',\) must name some of the shipped families \['digits",
        ),
        (("full_steps = 240", "full_steps = 240\npopulation = 0"), "budget.population"),
        (
            ("rung_steps = []", "rung_steps = [300]"),
            r"rung_steps=\[300\] must lie between probe_steps=40 and full_steps=240, in increasing order",
        ),
        (
            ("[search]", "[search]\ngrok_threshold = { low = 0.9, high = 0.99 }"),
            "search.grok_threshold labels outcomes and cannot be searched; set it in \\[train\\]",
        ),
    ],
)
def test_a_bad_study_file_is_one_line_naming_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = study_text("bad").replace(*change, 1)
    with pytest.raises(ConfigError, match=message) as error:
        load_study_spec(write_study(tmp_path, text))
    assert "study.toml" in str(error.value) and "\n" not in str(error.value)


def test_every_problem_of_a_study_file_is_named_at_once_with_the_key_a_typo_meant(tmp_path: Path) -> None:
    text = study_text("typos").replace("probe_steps", "probe_stepz").replace("hold_steps", "hold_step")
    text = text.replace("threshold = 0.5", "threshold = 0.5\nzzz = 1")
    text = text.replace("n_trials = 3", 'n_trials = "3x"')
    with pytest.raises(ConfigError) as error:
        load_study_spec(write_study(tmp_path, text))
    message = str(error.value)
    assert "budget.probe_stepz: unknown key; did you mean probe_steps?" in message
    assert "budget.hold_step: unknown key; did you mean hold_steps?" in message
    assert "pruner.zzz: unknown key; valid keys here: enabled, kind" in message
    assert "n_trials: Input should be a valid integer" in message
    assert "Field required" not in message and "\n" not in message


def test_the_shipped_study_files_are_valid() -> None:
    studies = sorted(Path(__file__).parents[1].joinpath("studies").glob("*.toml"))
    assert len(studies) >= 4
    for path in studies:
        spec = load_study_spec(path)
        assert spec.budget.probe_steps < spec.budget.full_steps


def test_the_default_storage_is_a_sqlite_file_under_runs(tmp_path: Path) -> None:
    spec = load_study_spec(write_study(tmp_path, study_text("defaults")))
    assert spec.storage_url() == "sqlite:///runs/defaults.db"
    assert spec.study_direction == "maximize"


# -- the study database ----------------------------------------------------------------------


def test_a_long_curve_segment_round_trips_on_every_database(storage_url: str) -> None:
    engine = open_storage(storage_url).engine
    name = f"long-{uuid.uuid4().hex[:8]}"
    steps = np.arange(30_000)  # 120 kB per column: past the 64 kB of a MySQL/MariaDB BLOB
    write_curve_segment(engine, name, 0, {"train_loss": (steps, np.linspace(1, 0, steps.size))})
    stored_steps, values = read_curves(engine, name)[0]["train_loss"]
    assert (stored_steps == steps).all() and values[-1] == 0.0


def test_a_waiting_trial_is_claimed_by_one_thread_only_on_every_database(storage_url: str) -> None:
    # A population's threads (and workers) start queued retries at the same moment. Optuna's
    # claim reads the state FOR UPDATE, which SQLite ignores: there, plain RDBStorage handed
    # 18 of 60 queued trials to two threads at once when this test was written.
    storage, name, queued, threads = open_storage(storage_url), f"claim-{uuid.uuid4().hex[:8]}", 60, 6
    study = optuna.create_study(storage=storage, study_name=name)
    for x in range(queued):
        study.enqueue_trial({"x": float(x)})
    start, claimed = threading.Barrier(threads), []

    def claim_all() -> None:
        mine = optuna.load_study(study_name=name, storage=storage)
        start.wait()
        while (trial_id := mine._pop_waiting_trial_id()) is not None:
            claimed.append(trial_id)

    workers = [threading.Thread(target=claim_all) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(claimed) == sorted(t._trial_id for t in study.trials)  # each once, none left
    assert {t.state for t in study.trials} == {TrialState.RUNNING}
    assert all(t.datetime_start is not None for t in study.trials)


def test_sqlite_storage_runs_in_wal_mode_and_stores_curves_in_batches(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'db' / 'study.db'}")
    with sqlite3.connect(tmp_path / "db" / "study.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    steps = np.arange(0, 100)
    write_curve_segment(storage.engine, "s", 0, {"train_loss": (steps[:50], np.linspace(1, 0.5, 50))})
    write_curve_segment(storage.engine, "s", 0, {"train_loss": (steps[50:], np.linspace(0.5, 0.1, 50))})
    write_curve_segment(storage.engine, "s", 1, {"val_acc": (np.array([0, 10]), np.array([0.1, 0.9]))})
    curves = read_curves(storage.engine, "s")
    assert sorted(curves) == [0, 1]
    got_steps, values = curves[0]["train_loss"]
    assert (got_steps == steps).all() and values[0] == 1.0 and values[-1] == pytest.approx(0.1)
    assert read_curves(storage.engine, "s", trial_numbers=[1], series=["val_acc"])[1]["val_acc"][1][1] == (
        pytest.approx(0.9)
    )


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://nobody@127.0.0.1:1/none", "not a url", "sqlite:////proc/no/such/dir/x.db"],
)
def test_an_unreachable_or_malformed_storage_is_one_clear_line(url: str) -> None:
    with pytest.raises(GrokforecastError) as error:
        open_storage(url)
    assert "\n" not in str(error.value) and ("storage" in str(error.value))


# -- real sweeps ---------------------------------------------------------------------------


def _plan(tmp_path: Path, storage_url: str | None, **kwargs) -> SweepPlan:
    name = f"t{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_path, study_text(name, **kwargs), f"{name}.toml")
    return SweepPlan.load(path, storage_url)


def test_a_sweep_prunes_at_the_probe_and_stores_every_curve_once(in_tmp: Path, storage_url: str) -> None:
    plan = _plan(in_tmp, storage_url, n_trials=3, threshold=1.0)  # every forecast is below 1
    create_study(plan)
    run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3
    storage = open_storage(plan.storage_url)
    curves = read_curves(storage.engine, plan.spec.name)
    for trial in study.trials:
        # Optuna sees the objective's series (val_acc): at step 0 and at the probe
        val_acc = dict(zip(*curves_of(plan, trial.number)["val_acc"], strict=True))
        assert trial.intermediate_values == pytest.approx({0: val_acc[0], 40: val_acc[40]}, abs=1e-6)
        assert trial.user_attrs["steps_trained"] == plan.spec.budget.probe_steps
        assert trial.user_attrs[DECISION_ATTR]["decision"] == "prune"
        steps, values = curves[trial.number]["train_loss"]
        assert (steps == np.arange(plan.spec.budget.probe_steps)).all() and np.isfinite(values).all()
        assert (curves[trial.number]["val_acc"][0] == np.arange(0, 41, 10)).all()
    assert not list(plan.checkpoint_dir.glob("*.pt*"))  # finished trials leave no checkpoint
    assert summarize(study, plan.spec.budget.full_steps).saved == pytest.approx(1 - 40 / 240)


def curves_of(plan: SweepPlan, number: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return read_curves(open_storage(plan.storage_url).engine, plan.spec.name)[number]


def test_kept_trials_continue_the_same_run_to_full_length(in_tmp: Path, storage_url: str) -> None:
    plan = _plan(in_tmp, storage_url, n_trials=2, threshold=0.0)
    create_study(plan)
    run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for trial in study.trials:
        assert trial.state is TrialState.COMPLETE
        assert trial.user_attrs[DECISION_ATTR]["decision"] == "keep"
        assert trial.user_attrs["steps_trained"] == 240 and trial.user_attrs["stopped"] == "budget"
        assert trial.value == pytest.approx(trial.user_attrs["final_val_acc"])
        assert (curves[trial.number]["train_loss"][0] == np.arange(240)).all()
        assert curves[trial.number]["val_acc"][1][-1] == pytest.approx(trial.value, abs=1e-6)
        assert sorted(trial.intermediate_values) == [0, 40, 50, 100, 150, 200, 240]  # val_acc
        assert trial.intermediate_values[240] == pytest.approx(trial.value, abs=1e-6)
    assert "2 trials finished: 2 complete, 0 pruned" in report_text(study, 240)


def test_a_kept_trial_is_judged_again_at_its_rung_and_pruned_there(in_tmp: Path) -> None:
    text = (
        study_text(f"t{uuid.uuid4().hex[:8]}", n_trials=6, threshold=0.0)  # every trial kept at the probe
        .replace("rung_steps = []", "rung_steps = [120]")
        .replace("exploration = 0.0", "exploration = 0.0\nn_min_probed = 1\nrung_prune_share = 0.9")
    )
    plan = SweepPlan.load(write_study(in_tmp, text, "rungs.toml"))
    create_study(plan)
    run_worker(plan, worker_index=0)  # the file's seed as it is: the same six trials on every run
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    judged_before: list[float] = []
    for trial in study.trials:  # one worker: judged at the rung in number order
        (rung,) = trial.user_attrs[RUNG_DECISIONS_ATTR]
        assert (rung["rung"], rung["step"]) == (1, 120)
        if "grokked" in rung["rule"]:  # nothing to forecast: kept, and ranks nobody
            assert rung["decision"] == "keep"
            continue
        ranked = [*judged_before, rung["probability"]]
        # outside the top 10 %, and less likely to grok than not
        pruned = rung["probability"] < min(np.quantile(ranked, 0.9), KEEP_ODDS)
        judged_before.append(rung["probability"])
        assert rung["decision"] == ("prune" if pruned else "keep")
        decision = trial.user_attrs[DECISION_ATTR]
        if not pruned:  # its probe's decision stands, and it ran to the end
            assert (trial.state, decision["rung"], trial.user_attrs["steps_trained"]) == (
                TrialState.COMPLETE,
                0,
                240,
            )
            continue
        # stopped at the rung, whose record is the trial's decision
        assert trial.state is TrialState.PRUNED and (decision["rung"], decision["step"]) == (1, 120)
        assert (
            decision["reason"].startswith("prune at step 120: ")
            and "judged at this rung" in decision["reason"]
        )
        assert trial.user_attrs["steps_trained"] == 120 and max(trial.intermediate_values) == 120
        assert curves_of(plan, trial.number)["train_loss"][0][-1] == 119
        # the dashboard's view: decided at the rung, on a probe the study file names
        view = trial_view(trial)
        assert (view.decided_at, view.probe_step, view.probability) == (120, None, rung["probability"])
        # the progress line and the report show the forecast that pruned it, not the probe's
        shown = f"P(grok) {rung['probability']:.2f}"
        assert trial_line(trial) == f"trial {trial.number} pruned at step 120 ({shown})"
        assert f"pruned  {rung['probability']:7.2f}     prune" in report_text(study, 240)
    assert any(t.state is TrialState.PRUNED for t in study.trials)  # the rung pruned someone


def test_a_population_judges_each_kept_trial_at_its_rung_on_its_own_curves(in_tmp: Path) -> None:
    """The second look, a study file's default, in a population: every slot's trial is
    judged at the rung on the history it would have alone, and a pruned one stops there."""
    text = (
        study_text(f"t{uuid.uuid4().hex[:8]}", n_trials=6, threshold=0.0)  # every trial kept at the probe
        .replace("rung_steps = []", "rung_steps = [120]\npopulation = 3")
        .replace("exploration = 0.0", "exploration = 0.0\nn_min_probed = 1\nrung_prune_share = 0.9")
    )
    plan = SweepPlan.load(write_study(in_tmp, text, "rungs.toml"))
    study = create_study(plan)
    # Three slots ask at once, so even a seeded sampler's draws land in any order: fixed
    # trials instead, three that learn and three that learn little, which rank below them.
    for learns in (True, False) * 3:
        study.enqueue_trial(
            {"lr": 1e-2, "weight_decay": 1.0, "data_fraction": 0.8}
            if learns
            else {"lr": 1e-3, "weight_decay": 0.1, "data_fraction": 0.3}
        )
    run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    ran = [t for t in study.trials if SURPLUS_ATTR not in t.system_attrs]
    assert len(ran) == 6
    for trial in ran:
        (rung,) = trial.user_attrs[RUNG_DECISIONS_ATTR]
        assert (rung["rung"], rung["step"]) == (1, 120)
        steps = trial.user_attrs["steps_trained"]
        if rung["decision"] == "prune":
            assert trial.state is TrialState.PRUNED and steps == 120
            assert trial.user_attrs[DECISION_ATTR]["rung"] == 1
        else:
            assert trial.state is TrialState.COMPLETE and steps == 240
        if "grokked" in rung["rule"]:
            continue
        alone = Trainer(plan.spec.train_config(trial.params))
        for until in (0, plan.spec.budget.probe_steps, 120):
            alone.run(until=until)
        history = History.from_curves(alone.curves, hyperparameters=hyperparameters_from(trial.params))
        forecast = HjorthPruner(40).policy.forecaster_for(history)[1].assess(history).probability
        assert rung["probability"] == pytest.approx(forecast, abs=0.01)  # the features amplify rounding
    assert any(t.state is TrialState.PRUNED for t in ran)  # the rung pruned someone


def _trained_alone(plan: SweepPlan, trial: optuna.trial.FrozenTrial) -> Trainer:
    """The trial's configuration trained alone in the sweep's segments: its probe, then on."""
    trainer = Trainer(plan.spec.train_config(trial.params))
    for until in (0, plan.spec.budget.probe_steps, trial.user_attrs["steps_trained"]):
        trainer.run(until=until)
    return trainer


def test_a_population_sweep_refills_its_slots_and_trains_each_trial_as_alone(in_tmp: Path) -> None:
    text = study_text(f"t{uuid.uuid4().hex[:8]}", n_trials=6, threshold=0.5)
    plan = SweepPlan.load(write_study(in_tmp, text.replace("hold_steps", "population = 3\nhold_steps")))
    create_study(plan)
    run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    ran = [t for t in study.trials if SURPLUS_ATTR not in t.system_attrs]  # threads racing for the last
    assert len(ran) == 6 and {t.state for t in ran} <= {TrialState.PRUNED, TrialState.COMPLETE}
    probe = plan.spec.budget.probe_steps
    for trial in ran:  # six trials through three slots
        alone, curves = _trained_alone(plan, trial), curves_of(plan, trial.number)
        assert list(curves["val_acc"][0]) == alone.curves.eval_steps
        assert (
            len(curves["train_loss"][1]) == len(alone.curves.train_loss) == trial.user_attrs["steps_trained"]
        )
        # To the probe as alone, to the tolerance tests/test_population.py holds every
        # workload to (batched matmuls round differently, and the steps amplify it: CI saw a
        # relative 2.4e-5 by the probe, against the 1e-5 this test had asked for)
        np.testing.assert_allclose(
            curves["train_loss"][1][:probe], alone.curves.train_loss[:probe], rtol=1e-4
        )
        decision = trial.user_attrs[DECISION_ATTR]  # and the decision as alone
        history = History.from_curves(alone.curves, hyperparameters=hyperparameters_from(trial.params))
        forecast = (
            HjorthPruner(probe).policy.decide(history.until(probe), 0, StudyContext()).record.probability
        )
        assert decision["probability"] == pytest.approx(forecast, abs=0.01)  # the features amplify rounding
        if abs(forecast - 0.5) > 0.01:
            assert decision["decision"] == ("prune" if forecast < 0.5 else "keep")


def test_a_population_trains_on_one_thread_of_its_own_and_its_trials_threads_on_one_core(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenMP throttles every team once more threads use it than there are cores: the
    population trains on a single thread with the worker's intra-op threads, each trial's
    own thread builds its trainer single-threaded, and the training thread ends with the
    worker."""
    import torch

    from grokforecast.sweep import lifecycle
    from grokforecast.training.population import Population

    seen: dict[str, set] = {"training": set(), "trials": set()}
    population_run, start = Population.run, lifecycle.TrialLifecycle._start

    def recorded_run(self: Population, *args: object, **kwargs: object) -> object:
        seen["training"].add((threading.current_thread().name, torch.get_num_threads()))
        return population_run(self, *args, **kwargs)

    def recorded_start(self: lifecycle.TrialLifecycle) -> object:
        seen["trials"].add((threading.current_thread().name, torch.get_num_threads()))
        return start(self)

    monkeypatch.setattr(Population, "run", recorded_run)
    monkeypatch.setattr(lifecycle.TrialLifecycle, "_start", recorded_start)
    text = study_text(f"t{uuid.uuid4().hex[:8]}", n_trials=4, threshold=0.5)
    plan = SweepPlan.load(write_study(in_tmp, text.replace("hold_steps", "population = 2\nhold_steps")))
    create_study(plan)
    threads = 2  # the suite's fixture sets 1 for every test; a worker's count must show
    torch.set_num_threads(threads)
    run_worker(plan)
    (training_thread, training_threads), *others = seen["training"]
    assert not others and training_thread.startswith("grokforecast-population")
    assert training_threads == threads
    assert {count for _, count in seen["trials"]} == {1}
    assert not [t for t in threading.enumerate() if t.name.startswith("grokforecast-population")]
    later: list[int] = []  # a thread started after the sweep has the worker's intra-op threads
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [threads]


def test_keep_checkpoints_keeps_a_finished_trials_last_checkpoint(in_tmp: Path) -> None:
    text = study_text("keep", n_trials=1, threshold=0.0).replace(
        "checkpoint_every = 100", "checkpoint_every = 100\nkeep_checkpoints = true"
    )
    plan = SweepPlan.load(write_study(in_tmp, text), f"sqlite:///{in_tmp / 'keep.db'}")
    create_study(plan)
    run_worker(plan)
    assert Trainer.resume(plan.checkpoint_dir / "trial-0.pt").step > plan.spec.budget.probe_steps  # kept


def test_a_trial_that_held_the_threshold_ends_early(in_tmp: Path) -> None:
    text = study_text("hold", n_trials=1, threshold=0.0, full_steps=3000).replace(
        "hold_steps = 10000", "hold_steps = 50"
    )
    text = text.replace("[search]\n", "[search]\nseed = { choices = [0] }\n").replace(
        "lr = { low = 1e-3, high = 1e-2, log = true }", "lr = { choices = [0.01] }"
    )
    text = text.replace("low = 0.1, high = 2.0, log = true", "choices = [1.0]").replace(
        "data_fraction = { low = 0.3, high = 0.8 }", "data_fraction = { choices = [0.8] }"
    )
    plan = SweepPlan.load(write_study(in_tmp, text), f"sqlite:///{in_tmp / 'hold.db'}")
    create_study(plan)
    run_worker(plan)
    trial = optuna.load_study(study_name="hold", storage=plan.storage_url).trials[0]
    assert trial.user_attrs["grokked"] and trial.user_attrs["stopped"] == "held"
    steps, accuracies = curves_of(plan, 0)["val_acc"]
    held = steps[np.flatnonzero(accuracies < 0.95).max() + 1]  # where its last run above it began
    assert trial.user_attrs["t4"] <= held
    assert trial.user_attrs["steps_trained"] == held + 50  # held 50 steps, and not one segment more


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_worker_is_retried_from_its_checkpoint_with_nothing_lost(
    in_tmp: Path, storage_url: str
) -> None:
    plan = _plan(in_tmp, storage_url, n_trials=2, threshold=0.0, full_steps=2000)
    create_study(plan)
    worker = subprocess.Popen(
        [*GROKFORECAST, "worker", str(plan.spec_path), "--storage", plan.storage_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = plan.checkpoint_dir / "trial-0.pt"
    try:
        _wait_for(checkpoint.exists)  # written atomically: once there, it is whole
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert study.trials[0].state is TrialState.RUNNING  # a dead worker leaves it running,
    resumed, study = _resume(plan)  # with a fresh heartbeat: the resume waits for it to go stale
    states = [t.state for t in study.trials]
    assert states[0] is TrialState.FAIL and states.count(TrialState.COMPLETE) == 2
    assert TrialState.RUNNING not in states and "RUNNING: up to" in resumed.stderr
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert (
        retry.user_attrs["resumed_from"]["trial"] == 0
        and retry.user_attrs["resumed_from"]["step"] >= plan.spec.budget.probe_steps
    )
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    assert 0 not in curves  # the dead trial's curves moved to its retry, not copied
    assert (curves[retry.number]["train_loss"][0] == np.arange(2000)).all()
    assert "2 trials finished" in resumed.stdout


@pytest.mark.slow
def test_a_killed_population_resumes_every_slot_from_its_checkpoint(in_tmp: Path) -> None:
    text = study_text(f"t{uuid.uuid4().hex[:8]}", n_trials=3, threshold=0.0, full_steps=2000)
    plan = SweepPlan.load(write_study(in_tmp, text.replace("hold_steps", "population = 2\nhold_steps")))
    create_study(plan)
    worker = subprocess.Popen(
        [*GROKFORECAST, "worker", str(plan.spec_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = [plan.checkpoint_dir / f"trial-{n}.pt" for n in (0, 1)]
    try:
        _wait_for(lambda: all(path.exists() for path in checkpoints))  # both slots past their probe
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    resumed, study = _resume(plan)
    states = [t.state for t in study.trials]
    assert states[:2] == [TrialState.FAIL] * 2 and states.count(TrialState.COMPLETE) == 3
    assert TrialState.RUNNING not in states
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for killed in (0, 1):  # each slot's trial continued from its own checkpoint, nothing lost
        retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed)
        assert retry.user_attrs["resumed_from"]["trial"] == killed
        assert retry.user_attrs["resumed_from"]["step"] >= plan.spec.budget.probe_steps
        assert (curves[retry.number]["train_loss"][0] == np.arange(2000)).all() and killed not in curves
    assert "3 trials finished" in resumed.stdout


def _resume(plan: SweepPlan) -> tuple[subprocess.CompletedProcess, optuna.Study]:
    """``grokforecast resume`` the plan's study, which must succeed; the study after it."""
    resumed = subprocess.run(
        [*GROKFORECAST, "resume", str(plan.spec_path), "--storage", plan.storage_url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    return resumed, optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)


def _long_sweep(in_tmp: Path, n_trials: int = 1, *options: str) -> tuple[SweepPlan, subprocess.Popen]:
    """A sweep whose trials are long enough (~10 s) to be still training when it is stopped,
    on a busy machine too; returned once every trial has its probe checkpoint."""
    plan = _plan(
        in_tmp, f"sqlite:///{in_tmp / 'long.db'}", n_trials=n_trials, threshold=0.0, full_steps=12000
    )
    sweep = subprocess.Popen(
        [*GROKFORECAST, "sweep", str(plan.spec_path), "--storage", plan.storage_url, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    checkpoints = [plan.checkpoint_dir / f"trial-{n}.pt" for n in range(n_trials)]
    _wait_for(lambda: all(path.exists() for path in checkpoints))
    return plan, sweep


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_study(in_tmp: Path) -> None:
    plan, sweep = _long_sweep(in_tmp)
    os.killpg(sweep.pid, signal.SIGINT)  # what a terminal sends to the whole process group
    _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "grokforecast resume" in stderr and "Traceback" not in stderr
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert retry_interrupted(study, max_retry=3) == 1
    assert retry_interrupted(study, max_retry=3) == 0  # queued once, not twice
    run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["resumed_from"]["step"] >= plan.spec.budget.probe_steps


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_sigterm_checkpoints_the_running_trial_and_says_how_to_resume(in_tmp: Path) -> None:
    plan, sweep = _long_sweep(in_tmp)

    def trained_past_the_probe() -> bool:
        trials = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url).trials
        return max(trials[0].intermediate_values, default=0) > plan.spec.budget.probe_steps

    # Stopped between the probe's checkpoint and the next step, it would rightly resume
    # from the probe: the stop must come once the trial has trained past it.
    _wait_for(trained_past_the_probe)
    sweep.send_signal(signal.SIGTERM)  # what `docker stop` and `timeout` send, to this process only
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "grokforecast resume" in stderr and "Traceback" not in stderr
    assert "\r" not in stderr  # no progress bar redrawn into a file
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    resumed, study = _resume(plan)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["resumed_from"]["step"] > plan.spec.budget.probe_steps
    assert "trial 1 " in resumed.stderr  # one line per finished trial in a log


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_workers_stop_with_their_parent(in_tmp: Path, stop: signal.Signals) -> None:
    plan, sweep = _long_sweep(in_tmp, 2, "--workers", "2")
    workers = worker_processes(sweep.pid)
    sweep.send_signal(stop)  # to the parent only, as `docker stop` or the OOM killer would
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == (143 if stop is signal.SIGTERM else -signal.SIGKILL), stderr
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=90)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL], (workers, stderr)  # none left RUNNING


def test_the_sweep_command_runs_two_workers_and_ends_with_a_report(in_tmp: Path) -> None:
    plan = _plan(in_tmp, None, n_trials=4)
    result = subprocess.run(
        [*GROKFORECAST, "sweep", str(plan.spec_path), "--workers", "2", "--n-trials", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=in_tmp,
    )
    assert result.returncode == 0, result.stderr
    assert "trials finished" in result.stdout and "compute:" in result.stdout
    study = optuna.load_study(
        study_name=plan.spec.name, storage=f"sqlite:///{in_tmp / 'runs' / plan.spec.name}.db"
    )
    assert 3 <= summarize(study, 240).finished <= 4  # --n-trials wins over the file's 4


def test_population_auto_measures_a_size_and_resume_may_choose_another(in_tmp: Path) -> None:
    plan = _plan(in_tmp, None, n_trials=3)
    size, why = choose_population(plan.spec)
    assert size in (1, *AUTO_SIZES) and why.startswith(f"population auto: {size} trial(s) at once")
    command = [*GROKFORECAST, "sweep", str(plan.spec_path), "--population", "auto", "--n-trials", "2"]
    swept = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=in_tmp)
    assert swept.returncode == 0, swept.stderr
    assert "population auto: " in swept.stdout and "2 trials finished" in swept.stdout
    command = [*GROKFORECAST, "resume", str(plan.spec_path), "--population", "2"]  # the study is the same
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=in_tmp)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 trials at once each" in resumed.stdout and "3 trials finished" in resumed.stdout
    bad = subprocess.run([*command[:3], "--population", "0"], capture_output=True, text=True, cwd=in_tmp)
    assert bad.returncode == 2 and "'0' is neither a number of trials (1 or more) nor 'auto'" in bad.stderr


def test_population_auto_times_every_candidate_as_a_sweep_evaluates(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every trainer "auto" times, alone or in a population, evaluates at step 0 and then
    once every eval_every steps, as a sweep's trials do: a timed window that also held an
    extra evaluation would weigh evaluations more than a sweep does, and a population
    evaluates its members at once."""
    evaluated: dict[Trainer, list[int]] = {}  # the trainers kept, so that none is mistaken for another
    record = Trainer._record_evaluation

    def counted(self: Trainer, *args, **kwargs) -> None:
        evaluated.setdefault(self, []).append(self.step)
        record(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_record_evaluation", counted)
    plan = _plan(in_tmp, None, n_trials=3)
    choose_population(plan.spec)
    every = plan.spec.train["eval_every"]
    assert len(evaluated) >= 4  # two alone, and at least a population of two
    for steps in evaluated.values():
        assert steps == list(range(0, steps[-1] + 1, every)) and steps[-1] > 0


def test_loading_a_study_file_leaves_no_torch_thread_behind() -> None:
    """Checking a study file builds its workload on a thread that ends with it, so the
    main thread keeps no OpenMP team: one left there slows a population's training thread
    and a lone trial measured on another thread (``population = "auto"``)."""
    quickstart = Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml"
    script = f"""
import os, time, grokforecast.sweep.plan as plan
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
plan.SweepPlan.load({str(quickstart)!r})
for _ in range(50):  # a thread's OpenMP workers leave shortly after it ends
    if threads() == before:
        break
    time.sleep(0.1)
print(before, threads())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split()
    assert after == before


def test_a_relative_sqlite_path_that_looks_absolute_is_warned_about_and_shown_resolved(in_tmp: Path) -> None:
    spec = write_study(in_tmp, study_text("where", n_trials=1, threshold=1.0))
    typo = f"sqlite:///tmp/{uuid.uuid4().hex[:8]}/typo.db"  # three slashes: relative
    result = subprocess.run(
        [*GROKFORECAST, "sweep", str(spec), "--storage", typo], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    resolved = in_tmp / typo.removeprefix("sqlite:///")
    assert f"write sqlite:///{typo.removeprefix('sqlite://')} (four slashes)" in result.stderr
    assert f"storage sqlite:///{resolved}" in result.stdout and resolved.is_file()
    assert misread_absolute_path(f"sqlite:///{resolved}") is None  # absolute
    assert misread_absolute_path("sqlite:///runs/study.db") is None  # no /runs here: meant relative


def test_racing_workers_finish_exactly_the_target_and_duplicate_nothing(
    in_tmp: Path, storage_url: str
) -> None:
    plan = _plan(in_tmp, storage_url, n_trials=6, threshold=0.5)
    create_study(plan)
    command = [*GROKFORECAST, "worker", str(plan.spec_path), "--storage", plan.storage_url]
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6  # not one more, whichever worker asked last
    surplus = [t for t in study.trials if t not in finished]
    assert all(t.state is TrialState.FAIL and SURPLUS_ATTR in t.system_attrs for t in surplus)
    assert retry_interrupted(study, max_retry=3) == 0  # a surplus trial is never retried
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)  # distinct proposals
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for trial in finished:
        steps, _ = curves[trial.number]["train_loss"]
        assert (steps == np.arange(trial.user_attrs["steps_trained"])).all()


def test_a_resumed_study_continues_its_sampling_instead_of_repeating_it(in_tmp: Path) -> None:
    plan = _plan(in_tmp, f"sqlite:///{in_tmp / 'resample.db'}", n_trials=3, threshold=1.0)
    create_study(plan)
    run_worker(plan)  # the first run: 3 trials
    run_worker(plan, 0, n_trials=6)  # the same worker, resumed to 6
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert len(study.trials) == 6
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6  # none drawn twice


def test_a_retry_falls_back_past_a_bad_checkpoint_and_the_finished_run_leaves_none(
    in_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = _plan(in_tmp, f"sqlite:///{in_tmp / 'ckpt.db'}", n_trials=1, threshold=0.0)
    study = create_study(plan)
    study.enqueue_trial({"lr": 5e-3, "weight_decay": 1.0, "data_fraction": 0.5})
    dead = study.ask()
    trainer = Trainer(plan.spec.train_config(suggest(dead, plan.spec)))
    newest = plan.checkpoint_dir / f"trial-{dead.number}.pt"
    for step in (100, 200):  # what the dead trial wrote: step 100, then step 200
        trainer.run(until=step)
        trainer.save(newest, keep_previous=True)
    study.tell(dead, state=TrialState.FAIL)
    newest.write_text("overwritten by something else")  # the newest one turned bad
    assert retry_interrupted(study, max_retry=3) == 1
    with caplog.at_level("WARNING", logger="grokforecast.sweep.lifecycle"):
        run_worker(plan)
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    retry = study.trials[-1]
    assert retry.state is TrialState.COMPLETE and retry.user_attrs["resumed_from"] == {
        "trial": 0,
        "step": 100,
    }
    assert any(
        "is not a readable grokforecast checkpoint" in m and "trial-0.pt.bad" in m for m in caplog.messages
    )
    assert sorted(p.name for p in plan.checkpoint_dir.iterdir()) == ["trial-0.pt.bad"]  # kept for a look


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_restarted_worker_continues_its_own_stopped_trial_and_no_other(in_tmp: Path) -> None:
    plan = _plan(in_tmp, f"sqlite:///{in_tmp / 'own.db'}", n_trials=3, threshold=0.0)
    study = create_study(plan)
    for left_by in (worker_identity(), "another-host:1"):  # both stopped by SIGTERM mid-run
        stopped = study.ask()
        suggest(stopped, plan.spec)
        stopped.set_user_attr(WORKER_ATTR, left_by)
        study.tell(stopped, state=TrialState.FAIL)
    run_worker(plan)  # this process restarted: the same host and process id
    trials = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url).get_trials()
    retries = [t for t in trials if t.system_attrs.get("retry_history")]
    assert [t.system_attrs["retry_history"] for t in retries] == [[0]]  # its own, not trial 1
    assert retries[0].params == trials[0].params and retries[0].state is not TrialState.FAIL
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert retry_interrupted(study, max_retry=3, target=3) == 0  # the target is met: nothing queued


def test_a_trial_killed_before_its_first_heartbeat_is_reaped_too(storage_url: str) -> None:
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2, max_retry=3)
    study = optuna.create_study(study_name=f"reap-{uuid.uuid4().hex[:8]}", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked outside optimize: no heartbeat, as if killed
        study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert reap_dead_trials(study, grace_seconds=2.5, max_retry=3) == 0
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]  # failed, queued


def test_status_studies_export_and_optuna_dashboard_read_the_study(in_tmp: Path) -> None:
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard

    plan = _plan(in_tmp, f"sqlite:///{in_tmp / 'read.db'}", n_trials=2, threshold=1.0)
    create_study(plan)
    run_worker(plan)

    status = subprocess.run(
        [*GROKFORECAST, "status", str(plan.spec_path), "--storage", plan.storage_url],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0 and "2 trials finished: 0 complete, 2 pruned" in status.stdout
    assert "compute: 80 steps of 480" in status.stdout
    listed = subprocess.run(
        [*GROKFORECAST, "studies", "--storage", plan.storage_url], capture_output=True, text=True
    )
    assert re.search(
        rf"{plan.spec.name}  2 trials  maximize  started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d$",
        listed.stdout.strip(),
    )
    exported = subprocess.run(
        [*GROKFORECAST, "export", plan.spec.name, "--storage", plan.storage_url, "-o", str(in_tmp / "out")],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr
    trials_csv = (in_tmp / "out" / f"{plan.spec.name}-trials.csv").read_text().splitlines()
    curves_csv = (in_tmp / "out" / f"{plan.spec.name}-curves.csv").read_text().splitlines()
    assert len(trials_csv) == 3 and trials_csv[0].startswith("number,state,value")
    assert sum(line.split(",")[1] == "train_loss" for line in curves_csv[1:]) == 2 * 40
    to_parquet = ["--format", "parquet", "-o", str(in_tmp / "out")]
    parquet = subprocess.run(
        [*GROKFORECAST, "export", plan.spec.name, "--storage", plan.storage_url, *to_parquet],
        capture_output=True,
        text=True,
    )
    assert parquet.returncode == 0, parquet.stderr
    trials = pq.read_table(in_tmp / "out" / f"{plan.spec.name}-trials.parquet").to_pylist()
    curves = pq.read_table(in_tmp / "out" / f"{plan.spec.name}-curves.parquet")
    assert [t["state"] for t in trials] == ["PRUNED", "PRUNED"] and trials[0]["steps_trained"] == 40
    assert curves.num_rows == len(curves_csv) - 1
    trial, series, step, value = curves_csv[1].split(",")
    first = curves.slice(0, 1).to_pylist()[0]
    assert (first["trial"], first["series"], first["step"]) == (int(trial), series, int(step))
    assert first["value"] == pytest.approx(float(value))

    app = optuna_dashboard.wsgi(plan.storage_url)
    environ: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    response: dict = {}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: response.update(status=status)))
    assert response["status"].startswith("200") and plan.spec.name.encode() in body


def test_a_study_can_prune_with_optunas_median_pruner_on_validation_accuracy(in_tmp: Path) -> None:
    """``kind = "median"``: every evaluation is reported, and pruning may come at any chunk."""
    from grokforecast.bench.live_pruners import with_pruner

    text = with_pruner(
        study_text("median", n_trials=4, threshold=0.5, full_steps=800),
        {"kind": '"median"', "n_startup_trials": "1"},
    ).replace("high = 1e-2", "high = 5e-2")
    plan = SweepPlan.load(write_study(in_tmp, text), f"sqlite:///{in_tmp / 'median.db'}")
    study = create_study(plan)
    # Groks at step 280-430, depending on the CPU's floating-point path: 800 leaves room.
    study.enqueue_trial({"lr": 3e-2, "weight_decay": 1.0, "data_fraction": 0.8})
    for _ in range(3):
        study.enqueue_trial({"lr": 1e-3, "weight_decay": 0.1, "data_fraction": 0.3})  # learns little
    run_worker(plan)

    trials = optuna.load_study(study_name="median", storage=plan.storage_url).trials
    assert trials[0].state is TrialState.COMPLETE and trials[0].user_attrs["grokked"]
    pruned = [t for t in trials if t.state is TrialState.PRUNED]
    assert pruned, "the trials that learn little fall below the grokking trial's median"
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(0, steps[-1] + 1, 10))  # every evaluation, not the training loss
        assert all(0.0 <= v <= 1.0 for v in trial.intermediate_values.values())
        assert "grokforecast:probe" not in trial.system_attrs  # no forecast was made
    for trial in pruned:
        assert trial.user_attrs["steps_trained"] >= 40
        assert "MedianPruner: val acc below" in trial.user_attrs[DECISION_ATTR]["reason"]


def test_a_trial_asked_for_past_the_target_is_neither_shown_nor_counted_as_failed() -> None:
    study = optuna.create_study()
    lines = io.StringIO()
    progress = ProgressLines(n_trials=1, full_steps=240, stream=lines)
    progress.update(study)
    done = {"stopped": "budget", "steps_trained": 240, "grokked": False}
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=done))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, system_attrs={SURPLUS_ATTR: True}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # a real interruption
    progress.update(study)
    assert lines.getvalue().splitlines() == [
        "trial 0 did not grok at step 240, value 0.5; 1 of 1 finished, 0 % saved",
        "trial 2 failed (resume retries it from its checkpoint); 1 of 1 finished, 0 % saved",
    ]
    assert summarize(study, 240).failed == 1
