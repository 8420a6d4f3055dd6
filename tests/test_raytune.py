"""The Ray Tune backend: the scheduler's decisions, true Optuna states, clusters, restore."""

from __future__ import annotations

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

from grokforecast.corpus import load_corpus
from grokforecast.forecast.fitting import probe_history
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.pruning.decision import DECISION_ATTR
from grokforecast.raytune import GrokForecastScheduler
from grokforecast.raytune.backend import run_ray_sweep
from grokforecast.records import RunRecord
from grokforecast.sweep.driver import SweepPlan
from grokforecast.sweep.storage import open_storage, read_curves
from studies import GROKFORECAST, study_text, write_study

PROBE_FRACTION = 0.1


def _results(record: RunRecord) -> list[dict]:
    """The results grokforecast's trainable would have reported for a corpus run: one per
    evaluation, with the dense training curves since the previous one."""
    curves = record.curves
    results = []
    for index, step in enumerate(int(s) for s in curves.eval_steps):
        previous = int(curves.eval_steps[index - 1]) if index else 0
        results.append(
            {
                "step": step,
                "train_loss_interval": curves.train_loss[previous:step],
                "train_acc_interval": curves.train_acc[previous:step],
                "val_loss": curves.val_loss[index],
                "val_acc": curves.val_acc[index],
                "weight_norm": curves.weight_norm[index],
            }
        )
    return results


def _feed(scheduler: GrokForecastScheduler, trial_id: str, record: RunRecord, upto: int) -> list[str]:
    return [scheduler.decide(trial_id, r, record.config) for r in _results(record) if r["step"] <= upto]


def test_the_scheduler_decides_once_at_the_probe_like_the_forecaster(tmp_path: Path) -> None:
    records = load_corpus("mlp_add59")
    probe = round(PROBE_FRACTION * records[0].config["steps"])
    forecaster = GrokForecaster.pretrained("full+hyperparameters")
    scheduler = GrokForecastScheduler(probe_step=probe)
    for i, record in enumerate(records[:12]):
        answers = _feed(scheduler, f"t{i}", record, upto=probe)
        assert set(answers[:-1]) == {TrialScheduler.CONTINUE}  # never before the probe
        # The curves rebuilt from the results give the forecaster's own probability on what
        # a run trained to the probe step has measured (per-step losses of updates 0..probe-1).
        history = probe_history(record, PROBE_FRACTION)
        history["train_loss"], history["train_acc"] = (
            history["train_loss"][:probe],
            history["train_acc"][:probe],
        )
        expected = forecaster.predict_proba(history)
        decision = scheduler.decision(f"t{i}")
        assert decision is not None and decision.step == probe
        assert decision.probability == pytest.approx(expected, abs=1e-9)
        assert answers[-1] == (
            TrialScheduler.STOP if expected < scheduler.threshold else TrialScheduler.CONTINUE
        )

    # Saved and restored (as a restored Tune experiment does), the decisions stand.
    scheduler.save(str(tmp_path / "scheduler.pkl"))
    restored = GrokForecastScheduler(probe_step=probe)
    restored.restore(str(tmp_path / "scheduler.pkl"))
    for i, record in enumerate(records[:12]):
        later = _feed(restored, f"t{i}", record, upto=probe + 100)[-1]
        kept = scheduler.decision(f"t{i}").probability >= scheduler.threshold
        assert later == (TrialScheduler.CONTINUE if kept else TrialScheduler.STOP)


def test_a_trial_that_cannot_be_forecast_is_kept_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    record = load_corpus("mlp_add59")[0]
    scheduler = GrokForecastScheduler(probe_step=10)  # ten training-loss points: too short
    answers = [scheduler.decide("short", r, record.config) for r in _results(record)[:2]]
    assert answers == [TrialScheduler.CONTINUE, TrialScheduler.CONTINUE]
    decision = scheduler.decision("short")
    assert decision is not None and decision.step == 10 and decision.rule.startswith("no forecast (")
    assert "keeps trial short without a forecast" in caplog.text


def test_the_scheduler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="probe_step=0"):
        GrokForecastScheduler(probe_step=0)
    with pytest.raises(ValueError, match=r"threshold=1\.5"):
        GrokForecastScheduler(probe_step=10, threshold=1.5)
    with pytest.raises(ValueError, match="series='loss'"):
        GrokForecastScheduler(probe_step=10, series="loss")


def test_importing_grokforecast_and_the_optuna_path_does_not_import_ray() -> None:
    code = (
        "import sys, grokforecast; from grokforecast.sweep.run import run_sweep; "
        "from grokforecast.cli import main; assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_ray_backend_is_one_line_naming_the_install() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # what an environment without Ray looks like
        "from grokforecast.errors import GrokforecastError\n"
        "try:\n    import grokforecast.raytune.backend\n"
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
        if trial.state is TrialState.COMPLETE:
            assert trial.value == trial.user_attrs[plan.spec.objective]  # the final value, not a partial one
            assert len(steps) == trial.user_attrs["steps_trained"]
        else:
            assert trial.user_attrs[DECISION_ATTR]["decision"] == "prune"
            assert trial.user_attrs["steps_trained"] == plan.spec.budget.probe_steps
    return trials


def test_a_sweep_on_a_two_node_cluster_records_pruned_and_complete_trials(
    in_tmp: Path, storage_url: str
) -> None:
    # threshold 0.6 on these tiny runs: some are forecast to grok, some not.
    spec_path = write_study(
        in_tmp, study_text(f"ray-{os.getpid()}-{time.time_ns()}", n_trials=6, threshold=0.6)
    )
    plan = SweepPlan.load(spec_path, storage_url)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": _free_port()})
    try:
        cluster.add_node(num_cpus=1)
        run_ray_sweep(plan, address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = _check_states_and_curves(plan)
    assert len(trials) == 6
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}


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
    # Interrupt once a trial has written its second checkpoint: a trial reports the next
    # one only after Tune has registered the first, so the interrupted experiment knows it
    # (the first checkpoint's folder appears on disk a moment before Tune registers it).
    deadline = time.monotonic() + 300
    while not list(in_tmp.glob("runs/study/ray/*/*/checkpoint_00000[1-9]")):
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


@pytest.mark.parametrize(
    ("setting", "message"), [("keep_top = 0.5", "pruner.keep_top"), ('kind = "median"', "pruner.kind")]
)
def test_pruner_settings_only_the_optuna_backend_has_are_refused_in_one_line(
    tmp_path: Path, setting: str, message: str
) -> None:
    text = study_text("refused").replace("[pruner]\n", f"[pruner]\n{setting}\n")
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
    assert message in shown.stderr and "--backend optuna" in shown.stderr
