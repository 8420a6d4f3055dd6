"""The Ray Tune backend: the scheduler's decisions, true Optuna states, clusters, restore."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray.cluster_utils import Cluster
from ray.tune.schedulers import TrialScheduler
from recorded import results

from grokforecast.backends.optuna.workers import make_pruner
from grokforecast.backends.ray import GrokForecastScheduler
from grokforecast.backends.ray.runner import connect, forecast_scheduler, run_ray_sweep
from grokforecast.core.decision import Decision, DecisionRecord, drawn_to_explore
from grokforecast.core.policy import PolicySettings
from grokforecast.core.study_model import fit_study_model
from grokforecast.corpus import load_corpus
from grokforecast.forecast.fitting import probe_history
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.records import RunRecord
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import open_storage, read_curves
from grokforecast.sweep.study import create_study
from grokforecast.sweep.summary import ran_trials
from grokforecast.vocabulary import DECISION_ATTR, PROBE_ATTR, TRIAL_NUMBER, WORKER_ATTR
from studies import GROKFORECAST, study_text, write_study

PROBE_FRACTION = 0.1


def _feed(scheduler: GrokForecastScheduler, trial_id: str, record: RunRecord, upto: int) -> list[str]:
    return [scheduler.decide(trial_id, r, record.config) for r in results(record) if r["step"] <= upto]


def test_the_scheduler_decides_once_at_the_probe_like_the_forecaster(tmp_path: Path) -> None:
    records = load_corpus("mlp_add59")
    probe = round(PROBE_FRACTION * records[0].config["steps"])
    forecaster = GrokForecaster.pretrained("full+hyperparameters")
    scheduler = GrokForecastScheduler(probe_step=probe, warm_up_keep_top=None)  # the threshold alone
    for i, record in enumerate(records[:12]):
        answers = _feed(scheduler, f"t{i}", record, upto=probe)
        assert set(answers[:-1]) == {TrialScheduler.CONTINUE}  # never before the probe
        # The curves rebuilt from the results give the forecaster's own probability on what
        # a run trained to the probe step has measured (per-step losses of updates 0..probe-1).
        history = dict(probe_history(record, PROBE_FRACTION))
        for name in ("train_loss", "train_acc"):
            history[name], history[f"{name}_steps"] = history[name][:probe], history[f"{name}_steps"][:probe]
        expected = forecaster.predict_proba(history)
        decision = scheduler.decision(f"t{i}")
        assert decision is not None and decision.step == probe
        assert decision.probability == pytest.approx(expected, abs=1e-9)
        assert (decision.decision is Decision.KEEP) == (expected >= scheduler.settings.threshold)
        assert answers[-1] == _answer_for(decision)

    # Saved and restored (as a restored Tune experiment does), the decisions stand.
    scheduler.save(str(tmp_path / "scheduler.pkl"))
    restored = GrokForecastScheduler(probe_step=probe, warm_up_keep_top=None)
    restored.restore(str(tmp_path / "scheduler.pkl"))
    for i, record in enumerate(records[:12]):
        later = _feed(restored, f"t{i}", record, upto=probe + 100)[-1]
        assert later == _answer_for(scheduler.decision(f"t{i}"))


def test_in_a_plain_tuner_each_decision_is_in_the_trials_results_and_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The scheduler in one's own Ray Tune code: result.json, progress.csv and the
    ResultGrid say why each trial was stopped or kept."""
    import csv
    import json

    from ray import tune

    records = load_corpus("quadratic_add97")[:4]
    probe = round(PROBE_FRACTION * records[0].config["steps"])
    runs = [results(record) for record in records]  # the closure ships these, by value

    def replay(config: dict) -> None:
        for result in runs[config["record"]]:
            tune.report(result)

    scheduler = GrokForecastScheduler(probe_step=probe, warm_up_keep_top=None, exploration=0.0)
    tuner = tune.Tuner(
        replay,
        param_space={"record": tune.grid_search(list(range(len(records))))},
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_acc", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, callbacks=[scheduler.callback()]),
    )
    connect()  # a local runtime by name: a bare ray.init() in fit() joins whatever cluster ran last
    try:
        grid = tuner.fit()
    finally:
        ray.shutdown()  # later tests start their own clusters
    printed = capsys.readouterr().out
    assert len(grid) == len(records)
    for result in grid:
        decision = result.metrics["grokforecast_decision"]
        assert decision in ("keep", "prune") and result.metrics["grokforecast_reason"].startswith(decision)
        assert 0.0 <= result.metrics["grokforecast_p_grok"] <= 1.0
        assert (result.metrics["step"] <= probe + 10) == (decision == "prune")
        with open(Path(result.path) / "progress.csv") as file:
            rows = list(csv.DictReader(file))
        assert rows[0]["grokforecast_decision"] == "" and rows[-1]["grokforecast_decision"] == decision
        last = json.loads((Path(result.path) / "result.json").read_text().splitlines()[-1])
        assert last["grokforecast_reason"] == result.metrics["grokforecast_reason"]
    assert printed.count("GrokForecastScheduler: trial ") == len(records)


def _answer_for(decision: DecisionRecord) -> str:
    """STOP for a trial the forecast stopped; a kept or explored trial runs on."""
    return TrialScheduler.STOP if decision.decision is Decision.PRUNE else TrialScheduler.CONTINUE


def _finish(scheduler: GrokForecastScheduler, trial_id: str, record: RunRecord, config: dict) -> None:
    """Report every result of ``record`` and end the trial, as Tune does for a trial run out."""
    for result in results(record):
        scheduler.decide(trial_id, result, config)
    scheduler.learn(trial_id, {"step": record.config["steps"]}, config)


def test_the_scheduler_recalibrates_on_the_trials_it_let_finish(tmp_path: Path) -> None:
    records = load_corpus("mlp_add59")
    probe = round(PROBE_FRACTION * records[0].config["steps"])
    # threshold 0: every trial runs on, so each teaches its outcome.
    scheduler = GrokForecastScheduler(
        probe_step=probe, threshold=0.0, warm_up_keep_top=None, min_calibration_trials=10
    )
    for i, record in enumerate(records[:12]):
        _finish(scheduler, f"t{i}", record, {**record.config, TRIAL_NUMBER: i})
    taught = scheduler.get_state()["outcomes"]
    # Labelled by the grok threshold reached in the results (no "grokked" in the last one).
    assert {key: outcome[2] for key, outcome in taught.items()} == {
        str(i): r.grokked for i, r in enumerate(records[:12])
    }
    assert {r.grokked for r in records[:12]} == {True, False}
    probes = [scheduler.probe(f"t{i}") for i in range(12)]
    expected = fit_study_model(
        [p.logit for p in probes], [p.standardized for p in probes], [r.grokked for r in records[:12]], 10
    )
    assert expected.trials == 12 and expected.scale != 1.0

    _feed(scheduler, "next", records[12], upto=probe)
    decision, probe_record = scheduler.decision("next"), scheduler.probe("next")
    assert decision.calibrated_on == 12
    assert decision.probability == pytest.approx(
        expected.probability(probe_record.logit, probe_record.standardized)
    )

    # A restored experiment's scheduler has learned the same.
    scheduler.save(str(tmp_path / "scheduler.pkl"))
    restored = GrokForecastScheduler(
        probe_step=probe, threshold=0.0, warm_up_keep_top=None, min_calibration_trials=10
    )
    restored.restore(str(tmp_path / "scheduler.pkl"))
    _feed(restored, "after restore", records[12], upto=probe)
    assert restored.decision("after restore").probability == pytest.approx(decision.probability)

    # Nor does one whose loss diverged (the study records it pruned).
    _feed(scheduler, "diverged", records[13], upto=probe)
    scheduler.learn("diverged", {"diverged_at": probe + 5, "grokked": False}, records[13].config)
    assert "diverged" not in scheduler.get_state()["outcomes"] and scheduler.probe("diverged") is not None

    # A trial the forecast stopped teaches nothing: its outcome is unknown.
    stopping = GrokForecastScheduler(probe_step=probe, threshold=1.0, warm_up_keep_top=None, exploration=0.0)
    for i, record in enumerate(records[:12]):
        _finish(stopping, f"t{i}", record, {**record.config, TRIAL_NUMBER: i})
    assert stopping.get_state()["outcomes"] == {}


def test_the_scheduler_explores_the_trials_the_optuna_pruner_explores() -> None:
    record = load_corpus("mlp_add59")[0]
    probe = round(PROBE_FRACTION * record.config["steps"])
    scheduler = GrokForecastScheduler(
        probe_step=probe, threshold=1.0, warm_up_keep_top=None, exploration=0.3, seed=7
    )
    explored = set()
    for number in range(20):
        answers = _feed(scheduler, f"t{number}", record, upto=probe)
        if scheduler.decision(f"t{number}").decision is Decision.EXPLORE:
            assert answers[-1] == TrialScheduler.CONTINUE
            explored.add(number)
    # Not the trial's Tune id but its Optuna trial number, which the Optuna pruner draws by.
    config = {**record.config, TRIAL_NUMBER: 3}
    for result in results(record):
        if result["step"] <= probe:
            scheduler.decide("renamed", result, config)
    assert (scheduler.decision("renamed").decision is Decision.EXPLORE) == drawn_to_explore(7, 3, 0.3)
    assert explored == {n for n in range(20) if drawn_to_explore(7, f"t{n}", 0.3)}
    assert 0 < len(explored) < 20


def test_a_resumed_ray_sweep_recalibrates_on_the_studys_finished_trials(tmp_path: Path) -> None:
    plan = SweepPlan.load(write_study(tmp_path, study_text("taught")), f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study()

    def finished(number: int, decision: str, grokked: bool | None) -> None:
        attrs = {} if grokked is None else {"grokked": grokked}
        probe = {"decision": decision, "logit": float(number), "probability": 0.5, "forecaster": "full"}
        trial = optuna.trial.create_trial(value=1.0, user_attrs=attrs, system_attrs={PROBE_ATTR: probe})
        study.add_trial(trial)

    finished(0, "keep", True)
    finished(1, "explore", False)
    finished(2, "keep", None)  # no outcome recorded: teaches nothing
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, system_attrs={}))
    outcomes = forecast_scheduler(plan, study).get_state()["outcomes"]
    # Probes stored before the standardized features were kept teach the scale and shift only.
    assert outcomes == {"0": ("full", 0.0, True, ()), "1": ("full", 1.0, False, ())}


def test_importing_grokforecast_and_the_optuna_path_does_not_import_ray() -> None:
    code = (
        "import sys, grokforecast; from grokforecast.launch import run_sweep; "
        "from grokforecast.cli import main; assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_ray_backend_is_one_line_naming_the_install() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # what an environment without Ray looks like
        "from grokforecast.errors import GrokforecastError\n"
        "try:\n    import grokforecast.backends.ray.runner\n"
        "except GrokforecastError as error:\n    print(error)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown == "Ray Tune is not installed; install it with: pip install 'grokforecast[ray]'\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_states_and_curves(plan: SweepPlan) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    trials = study.trials
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for trial in trials:
        steps, _ = curves[trial.number]["train_loss"]
        assert (np.diff(steps) == 1).all() and steps[0] == 0  # each step once, no gap
        # Optuna sees the objective's own series (val_acc), as on the Optuna backend
        val_acc = dict(zip(*curves[trial.number]["val_acc"], strict=True))
        assert 0 in trial.intermediate_values and plan.spec.budget.probe_steps in trial.intermediate_values
        for step, value in trial.intermediate_values.items():
            assert value == pytest.approx(val_acc[step], abs=1e-6)
        if trial.state is TrialState.COMPLETE:
            assert trial.value == trial.user_attrs[plan.spec.objective]  # the final value, not a partial one
            assert len(steps) == trial.user_attrs["steps_trained"]
        else:
            assert trial.user_attrs[DECISION_ATTR]["decision"] == "prune"
            assert trial.user_attrs["steps_trained"] == plan.spec.budget.probe_steps
    return trials


@pytest.mark.slow
def test_a_sweep_on_a_two_node_cluster_records_pruned_and_complete_trials(
    in_tmp: Path, storage_url: str
) -> None:
    # threshold 0.5 on these tiny runs: some are forecast to grok (0.37-0.65), some not.
    spec_path = write_study(in_tmp, study_text(f"ray-{os.getpid()}-{time.time_ns()}", n_trials=6))
    plan = SweepPlan.load(spec_path, storage_url)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": _free_port()})
    try:
        cluster.add_node(num_cpus=1)
        run_ray_sweep(plan, create_study(plan), address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = _check_states_and_curves(plan)
    assert len(trials) == 6
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}


@pytest.mark.slow
def test_an_interrupted_ray_sweep_is_restored_and_every_trial_settled(in_tmp: Path) -> None:
    text = study_text("ray-restore", n_trials=2, threshold=0.0, full_steps=3000)
    spec_path = write_study(in_tmp, text.replace("checkpoint_every = 100", "checkpoint_every = 200"))
    plan = SweepPlan.load(spec_path)
    environment = {**os.environ, "RAY_ADDRESS": ""}
    sweep = subprocess.Popen(
        [*GROKFORECAST, "sweep", str(spec_path), "--backend", "ray"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=environment,
    )
    # Interrupt once a trial has written its third checkpoint: a checkpoint's folder appears
    # on disk a moment before Tune registers it, and a trial reports the next one only after
    # Tune has registered the one before, so the interrupted experiment knows the second
    # (step 200) for sure.
    deadline = time.monotonic() + 300
    while not list(in_tmp.glob("runs/study/ray/*/*/checkpoint_00000[2-9]")):
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.5)
    os.killpg(sweep.pid, signal.SIGINT)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stderr
    assert "grokforecast resume" in stderr and "Traceback" not in stderr
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    assert TrialState.RUNNING in {t.state for t in study.trials}  # interrupted, not failed

    resumed = subprocess.run(
        [*GROKFORECAST, "resume", str(spec_path), "--backend", "ray"],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert resumed.returncode == 0, resumed.stderr
    trials = _check_states_and_curves(plan)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert any(t.user_attrs.get("resumed_from", {}).get("step", 0) >= 200 for t in trials)


def test_the_median_pruner_only_the_optuna_backend_has_is_refused_in_one_line(tmp_path: Path) -> None:
    text = study_text("refused").replace("[pruner]\n", '[pruner]\nkind = "median"\n')
    path = write_study(tmp_path, text)
    shown = subprocess.run(
        [
            *GROKFORECAST,
            "sweep",
            str(path),
            "--backend",
            "ray",
            "--storage",
            f"sqlite:///{tmp_path / 's.db'}",
        ],
        capture_output=True,
        text=True,
    )
    assert shown.returncode != 0 and shown.stderr.count("\n") == 1, shown.stderr
    assert "pruner.kind" in shown.stderr and "--backend optuna" in shown.stderr


def _population_sweep(path: Path, *options: str) -> subprocess.Popen:
    """``grokforecast sweep`` of the study file at ``path`` on a local Ray runtime."""
    return subprocess.Popen(
        [*GROKFORECAST, "sweep", str(path), "--backend", "ray", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
        env={**os.environ, "RAY_ADDRESS": ""},
    )


def _ran(plan: SweepPlan) -> list[optuna.trial.FrozenTrial]:
    """The study's trials but those a population's threads asked for past the target."""
    return ran_trials(optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url))


def test_each_ray_trial_holds_a_population_whose_members_are_recorded_in_the_study(in_tmp: Path) -> None:
    # Six grid points, three at a data fraction of 0.3 and three at 0.8: the forecast sets
    # them far apart (the data fraction is its largest term), so whatever order two Ray
    # workers ask for them in, the threshold prunes some and keeps others. Random draws
    # asked concurrently differ from run to run, and left a forecast 0.004 from the line.
    grid = {
        'kind = "random"': 'kind = "grid"',
        "lr = { low = 1e-3, high = 1e-2, log = true }": "lr = { choices = [3e-3] }",
        "weight_decay = { low = 0.1, high = 2.0, log = true }": "weight_decay = { choices = [0.5, 1, 2] }",
        "data_fraction = { low = 0.3, high = 0.8 }": "data_fraction = { choices = [0.3, 0.8] }",
    }
    text = study_text("raypop", n_trials=6, threshold=0.5)
    for random_search, grid_search in grid.items():
        text = text.replace(random_search, grid_search)
    path = write_study(in_tmp, text)
    sweep = _population_sweep(path, "--population", "3")
    stdout, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, stderr
    assert "Ray Tune, 3 trials at once each" in stdout and "6 trials finished" in stdout
    plan = SweepPlan.load(path)
    trials = _ran(plan)
    assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for trial in trials:  # recorded as on the Optuna backend: dense curves, the decision, the outcome
        steps, _ = curves[trial.number]["train_loss"]
        assert (steps == np.arange(trial.user_attrs["steps_trained"])).all()
        assert trial.user_attrs[DECISION_ATTR]["decision"] in {"keep", "prune"}
        assert (trial.state is TrialState.PRUNED) == (trial.user_attrs[DECISION_ATTR]["decision"] == "prune")
    # Two CPUs, one per Tune trial: two populations, in two Ray worker processes.
    workers = {t.user_attrs[WORKER_ATTR] for t in trials}
    assert len(workers) == 2 and str(sweep.pid) not in {w.split(":")[1] for w in workers}
    # Each Tune trial's results name its members as they ended, each member once.
    results = [
        result
        for log in in_tmp.glob("runs/study/ray-populations/*/*/result.json")
        for result in map(json.loads, log.read_text().splitlines())
        if "trial" in result  # not a progress result between members
    ]
    assert sorted(r["trial"] for r in results) == [t.number for t in trials]
    for result in results:
        assert result["state"] == trials[result["trial"]].state.name
        assert result["steps_trained"] == trials[result["trial"]].user_attrs["steps_trained"]


def test_a_population_that_cannot_stack_its_trials_on_ray_is_one_line_naming_why(in_tmp: Path) -> None:
    # Two trials whose Grokfast MA windows differ: a grid gives each window to one of them.
    text = study_text("raypop-misfit", n_trials=2).replace('kind = "random"', 'kind = "grid"')
    text = text.replace('device = "cpu"', 'device = "cpu"\ngrokfast = "ma"')
    search = text[text.index("[search]") : text.index("[budget]")]
    text = text.replace(search, "[search]\ngrokfast_window = { choices = [5, 9] }\n\n")
    path = write_study(in_tmp, text.replace("grace_period = 3", "grace_period = 3\nmax_retry = 0"))
    sweep = _population_sweep(path, "--population", "2")
    _, stderr = sweep.communicate(timeout=300)
    shown = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert sweep.returncode != 0 and len(shown) == 1 and "Traceback" not in stderr, stderr
    assert "population 0 failed on Ray" in shown[0] and "its Grokfast window is" in shown[0]
    assert "grokforecast resume" in shown[0]


@pytest.mark.slow
def test_an_interrupted_ray_population_resumes_every_member_from_its_checkpoint(in_tmp: Path) -> None:
    text = study_text("raypop-resume", n_trials=3, threshold=0.0, full_steps=2000)
    path = write_study(in_tmp, text.replace("hold_steps", "population = 2\nhold_steps"))
    plan = SweepPlan.load(path)
    # One CPU per population and two CPUs: two populations, so both must be stopped.
    sweep = _population_sweep(path)
    checkpoints = [plan.checkpoint_dir / f"trial-{n}.pt" for n in range(3)]
    deadline = time.monotonic() + 300
    while sum(path.exists() for path in checkpoints) < 2:  # two members past their probe
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGINT)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "grokforecast resume" in stderr, stderr
    checkpointed = {n for n, path in enumerate(checkpoints) if path.exists()}
    # Tune stopped the populations: each member checkpointed and failed, or left RUNNING if
    # Tune killed its process first; either way it is retried from its checkpoint.
    interrupted = {t.number for t in _ran(plan) if t.state in (TrialState.FAIL, TrialState.RUNNING)}
    assert checkpointed and checkpointed <= interrupted

    resumed = subprocess.run(
        [*GROKFORECAST, "resume", str(path), "--backend", "ray"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "3 trials finished" in resumed.stdout
    trials = _ran(plan)
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and states.count(TrialState.COMPLETE) == 3
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    for killed in interrupted:  # each continued from its own checkpoint, nothing lost, nothing twice
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed)
        assert killed not in curves and (curves[retry.number]["train_loss"][0] == np.arange(2000)).all()
        if killed in checkpointed:
            assert retry.user_attrs["resumed_from"]["trial"] == killed
            assert retry.user_attrs["resumed_from"]["step"] >= plan.spec.budget.probe_steps


def test_the_study_files_pruner_and_grok_threshold_reach_both_stoppers_alike(tmp_path: Path) -> None:
    text = (
        study_text("settings")
        .replace('device = "cpu"', 'device = "cpu"\ngrok_threshold = 0.9')
        .replace("threshold = 0.5", "threshold = 0.3\nkeep_top = 0.4\nseed = 5\nrung_prune_share = 0.3")
        .replace("rung_steps = []", "rung_steps = [100, 180]")
    )
    plan = SweepPlan.load(write_study(tmp_path, text), f"sqlite:///{tmp_path / 's.db'}")
    expected = PolicySettings(
        probe_step=40,
        threshold=0.3,
        keep_top=0.4,
        warm_up_keep_top=None,  # `false` in the study file
        exploration=0.0,
        grok_threshold=0.9,
        rungs=(100, 180),
        rung_prune_share=0.3,
        seed=5,
    )
    assert make_pruner(plan.spec).settings == expected
    assert forecast_scheduler(plan, optuna.create_study()).settings == expected
