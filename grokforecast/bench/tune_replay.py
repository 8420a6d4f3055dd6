"""Ray Tune's ASHA against the GrokForecastScheduler on recorded runs, replayed through Tune.

Every run of a shipped corpus becomes one Tune trial whose trainable reports the recorded
curves (at a stride of evaluations that gives the probe at least eight reports, with the
dense training curves in between) as the live trainable would, at no training cost.
Both schedulers see the same trials in the same order on a local Ray runtime. ASHA is
configured as a Tune user would for this budget: on validation accuracy, grace period =
the probe step, reduction factor 3.

A grokking run counts as *found* when it was trained past its grok step t4; compute is
the steps trained, against running every trial to full length and against the oracle
(probe every trial, continue exactly the ones that grok).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from grokforecast.bench.replay import ReplayOutcome, summarize_counts
from grokforecast.records import RunRecord

#: Reports (results) a trial sends up to its probe step, at least.
REPORTS_TO_PROBE = 8


def replay_trial(config: dict[str, Any], records: list[RunRecord], report_every: int) -> None:
    """Report the recorded curves of ``records[config["record"]]`` as the live trainable does."""
    from ray import tune

    curves = records[config["record"]].curves
    reported = 0
    for index, step in enumerate(int(s) for s in curves.eval_steps):
        if step % report_every and index != len(curves.eval_steps) - 1:
            continue
        result = {
            "step": step,
            "val_loss": curves.val_loss[index],
            "val_acc": curves.val_acc[index],
            "weight_norm": curves.weight_norm[index],
        }
        if step > reported:
            result["train_loss"] = curves.train_loss[step - 1]
            result["train_loss_interval"] = curves.train_loss[reported:step]
            result["train_acc_interval"] = curves.train_acc[reported:step]
        tune.report(result)
        reported = step


def compare_on_tune(
    records: list[RunRecord],
    probe_fraction: float = 0.1,
    include: tuple[str, ...] = ("forecast", "asha"),
    corpus: str = "",
) -> list[ReplayOutcome]:
    """Replay ``records`` (one budget) under the forecast scheduler and ASHA (``include``)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from grokforecast.backends.ray.runner import connect
    from grokforecast.backends.ray.scheduler import GrokForecastScheduler
    from grokforecast.vocabulary import TRIAL_NUMBER

    full = int(records[0].config["steps"])
    if any(int(r.config["steps"]) != full for r in records):
        raise ValueError("replay records of one budget at a time (one corpus)")
    eval_every = int(records[0].curves.eval_steps[1])
    report_every = eval_every * max(1, round(probe_fraction * full) // (REPORTS_TO_PROBE * eval_every))
    probe = max(1, round(probe_fraction * full / report_every)) * report_every
    schedulers = {
        name: scheduler
        for key, name, scheduler in (
            ("forecast", "GrokForecastScheduler", GrokForecastScheduler(probe_step=probe)),
            (
                "asha",
                f"Ray Tune ASHA (val_acc, grace {probe}, rf 3)",
                ASHAScheduler(
                    time_attr="step",
                    metric="val_acc",
                    mode="max",
                    max_t=full,
                    grace_period=probe,
                    reduction_factor=3,
                ),
            ),
        )
        if key in include
    }
    # Numbered as the Ray backend numbers trials, so that exploration draws the same trials
    # on every run (Tune's own trial ids change from one experiment to the next).
    points = [
        {"record": i, TRIAL_NUMBER: i, **{k: r.config[k] for k in ("lr", "weight_decay", "data_fraction")}}
        for i, r in enumerate(records)
    ]
    space = {"record": tune.randint(0, len(records)), TRIAL_NUMBER: tune.randint(0, len(records))} | {
        # Ranges that hold every recorded value.
        k: tune.uniform(min(p[k] for p in points), max(p[k] for p in points) + 1e-12)
        for k in ("lr", "weight_decay", "data_fraction")
    }
    connect()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    outcomes = []
    for name, scheduler in schedulers.items():
        with tempfile.TemporaryDirectory(prefix="grokforecast-tune-replay-") as storage:
            tuner = tune.Tuner(
                tune.with_parameters(replay_trial, records=records, report_every=report_every),
                param_space=space,
                tune_config=tune.TuneConfig(
                    scheduler=scheduler,
                    search_alg=BasicVariantGenerator(points_to_evaluate=points),
                    num_samples=len(records),
                ),
                run_config=tune.RunConfig(verbose=0, storage_path=storage),
            )
            last_step = {r.config["record"]: int(r.metrics["step"]) for r in tuner.fit()}
        steps = [last_step[i] for i in range(len(records))]
        outcomes.append(summarize_counts(records, steps, name, corpus, order=0, probe=probe))
    return outcomes
