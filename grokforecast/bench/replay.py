"""Pruner replay: recorded grokking runs through real Optuna studies, one study per stopper.

Each trial of a replay is one full-length run of a shipped corpus. Its objective reports
the recorded curves step by step through a :class:`~grokforecast.Monitor`, exactly as a
live objective would (the dense training series every step, the validation series every
``eval_every`` steps), and asks ``should_prune`` after every report: the pruner under
test sees what it would have seen live, at no training cost. A pruned trial's compute is
the steps it was replayed to; a trial that runs to the end costs the full budget.

Every stopper replays the same trials in the same order (a seeded permutation of the
corpus, enqueued with their recorded hyperparameters); several orders give the spread.
A grokking run counts as *found* when it was trained to its grok step t4.

*Honest labels*: a run whose best validation accuracy lies within :data:`LABEL_BAND` of
the grok threshold is labelled by a handful of validation examples (on digits, 0.9505
against 0.95 is two of them). Such runs are counted in their own columns; the 95 %
target is judged on the runs outside the band.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from grokforecast.backends.optuna.monitor import Monitor
from grokforecast.backends.optuna.pruner import HjorthPruner
from grokforecast.bench.baselines import FallingValLossPruner, TopValAccPruner
from grokforecast.core.policy import SECOND_LOOK_SHARES
from grokforecast.corpus import load_corpus
from grokforecast.forecast.features import FEATURE_GROUPS
from grokforecast.forecast.fitting import fit_on_records, probe_history, usable_records
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.records import RunRecord
from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD, HYPERPARAMETERS, PROBE_ATTR

RECORD_PARAM = "record"
#: A ThresholdPruner user's floor for validation accuracy after the warm-up.
VAL_ACC_FLOOR = 0.1
#: Recall the tuned HjorthPruner's threshold keeps on the corpora its forecaster saw.
TUNED_RECALL = 0.97
#: Best validation accuracies this close to the grok threshold make a borderline label.
LABEL_BAND = 0.01
#: The share of probed trials the top-k baseline keeps (one rung of ASHA's factor 3).
TOP_K_SHARE = 1 / 3


def borderline(record: RunRecord) -> bool:
    """Whether the run's label turns on a few validation examples (:data:`LABEL_BAND`)."""
    threshold = record.config.get("grok_threshold", DEFAULT_GROK_THRESHOLD)
    return abs(max(record.curves.val_acc) - threshold) < LABEL_BAND


@dataclass(frozen=True)
class Budget:
    """One corpus's budget: every run has ``full`` steps, evaluated every ``eval_every``."""

    full: int
    eval_every: int
    probe: int

    @classmethod
    def of(cls, records: Sequence[RunRecord], probe_fraction: float) -> Budget:
        full = int(records[0].config["steps"])
        if any(int(r.config["steps"]) != full for r in records):
            raise ValueError("replay the records of one budget at a time (one corpus)")
        eval_every = int(records[0].curves.eval_steps[1] - records[0].curves.eval_steps[0])
        probe = max(1, round(probe_fraction * full / eval_every)) * eval_every
        return cls(full, eval_every, probe)


@dataclass(frozen=True)
class Stopper:
    """A pruner as a user would set it up, and the series its trials report to Optuna."""

    name: str
    make: Callable[[], BasePruner]
    series: str
    #: Whether the pruner reads the Monitor's dense curves (only the HjorthPruner does).
    dense: bool = False


@dataclass(frozen=True)
class ReplayOutcome:
    """What one stopper did on one trial order of one corpus."""

    stopper: str
    corpus: str
    order: int
    trials: int
    grokking: int
    found: int
    non_grokking_stopped: int
    steps: int
    steps_unpruned: int
    steps_oracle: int
    best_value: float | None
    steps_to_first_grok: int | None
    #: Grokking runs, and those found, whose label is borderline (:func:`borderline`).
    grokking_borderline: int = 0
    found_borderline: int = 0
    #: ROC AUC of the forecasts made at the probe (:func:`decision_auc`).
    auc: float | None = None
    #: The model family of the corpus (``RunRecord.family``).
    family: str = ""

    @property
    def recall(self) -> float:
        return self.found / self.grokking if self.grokking else 1.0

    @property
    def grokking_clear(self) -> int:
        return self.grokking - self.grokking_borderline

    @property
    def found_clear(self) -> int:
        return self.found - self.found_borderline

    @property
    def recall_clear(self) -> float:
        """Recall over the grokking runs outside the label band: what the target judges."""
        return self.found_clear / self.grokking_clear if self.grokking_clear else 1.0

    @property
    def specificity(self) -> float:
        non_grokking = self.trials - self.grokking
        return self.non_grokking_stopped / non_grokking if non_grokking else 1.0


class OraclePruner(BasePruner):
    """Knows each replayed run's outcome: prunes at the probe exactly the runs that do not grok."""

    def __init__(self, records: Sequence[RunRecord], probe_step: int) -> None:
        self.records = records
        self.probe_step = probe_step

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        grokked = self.records[trial.params[RECORD_PARAM]].grokked
        return step is not None and step >= self.probe_step and not grokked


def oracle_steps(records: Sequence[RunRecord], budget: Budget) -> int:
    """The oracle's compute: every run to the probe, the grokking ones on to full length."""
    return budget.probe * len(records) + (budget.full - budget.probe) * sum(r.grokked for r in records)


def replay_objective(
    records: Sequence[RunRecord], stopper: Stopper, budget: Budget
) -> Callable[[optuna.Trial], float]:
    """An Optuna objective that replays ``records[trial's "record" parameter]``.

    Returns the run's final validation accuracy; records ``steps_trained`` on the trial.
    """
    bounds = {
        name: (min(r.config[name] for r in records), max(r.config[name] for r in records))
        for name in HYPERPARAMETERS
    }

    def objective(trial: optuna.Trial) -> float:
        record = records[trial.suggest_int(RECORD_PARAM, 0, len(records) - 1)]
        for name, (low, high) in bounds.items():  # fixed by the enqueued trial; the pruner reads them
            trial.suggest_float(name, low, high, log=name != "data_fraction" and low > 0)
        curves = record.curves
        evaluations = {int(step): index for index, step in enumerate(curves.eval_steps)}
        monitor = Monitor(trial, report_every=budget.eval_every, series=stopper.series)
        for step in range(budget.full + 1):
            if stopper.dense and step < curves.steps:
                monitor.log(step, train_loss=curves.train_loss[step], train_acc=curves.train_acc[step])
            index = evaluations.get(step)
            if index is not None:
                monitor.log(
                    step,
                    val_loss=curves.val_loss[index],
                    val_acc=curves.val_acc[index],
                    weight_norm=curves.weight_norm[index],
                )
            if monitor.should_prune():
                trial.set_user_attr("steps_trained", step)
                raise optuna.TrialPruned()
        trial.set_user_attr("steps_trained", budget.full)
        return float(curves.val_acc[-1])

    return objective


def replay(
    records: Sequence[RunRecord], stopper: Stopper, budget: Budget, order_seed: int, corpus: str = ""
) -> ReplayOutcome:
    """Replay ``records`` in the order drawn from ``order_seed`` under ``stopper``."""
    order = list(range(len(records)))
    random.Random(order_seed).shuffle(order)
    study = optuna.create_study(
        # A fixed name: HyperbandPruner puts trials in brackets by a hash of it.
        study_name=f"replay {corpus} {stopper.name} order {order_seed}",
        direction="maximize",
        pruner=stopper.make(),
        sampler=optuna.samplers.RandomSampler(seed=order_seed),
    )
    for index in order:
        study.enqueue_trial(
            {RECORD_PARAM: index, **{name: records[index].config[name] for name in HYPERPARAMETERS}}
        )
    study.optimize(replay_objective(records, stopper, budget), n_trials=len(records))
    return summarize_replay(study, records, stopper.name, corpus, order_seed, budget)


def summarize_replay(
    study: optuna.Study,
    records: Sequence[RunRecord],
    stopper: str,
    corpus: str,
    order_seed: int,
    budget: Budget,
) -> ReplayOutcome:
    trials = sorted(study.trials, key=lambda t: t.number)
    # Only finished trials count: Optuna gives a pruned trial its last intermediate value.
    complete = [t.value for t in trials if t.state is TrialState.COMPLETE]
    replayed = [records[t.params[RECORD_PARAM]] for t in trials]
    outcome = summarize_counts(
        replayed,
        [int(t.user_attrs["steps_trained"]) for t in trials],
        stopper,
        corpus,
        order_seed,
        budget.probe,
        best_value=max(complete) if complete else None,
    )
    return dataclasses.replace(outcome, auc=decision_auc(trials, replayed))


def decision_auc(trials: Sequence[FrozenTrial], records: Sequence[RunRecord]) -> float | None:
    """ROC AUC of the P(grok) a forecasting stopper recorded at each trial's probe against
    the run's outcome: the forecast as the study made it, its study model included (a
    later rung's forecast is not this one). None for a stopper that records none, or a
    corpus with one outcome only."""
    from sklearn.metrics import roc_auc_score

    probabilities = [t.system_attrs.get(PROBE_ATTR, {}).get("probability") for t in trials]
    scored = [(p, r.grokked) for p, r in zip(probabilities, records, strict=True) if p is not None]
    if not scored or len({grokked for _, grokked in scored}) < 2:
        return None
    return float(roc_auc_score([g for _, g in scored], [p for p, _ in scored]))


def summarize_counts(
    records: Sequence[RunRecord],
    steps_trained: Sequence[int],
    stopper: str,
    corpus: str,
    order: int,
    probe: int,
    best_value: float | None = None,
) -> ReplayOutcome:
    """Score a stopper from the steps each record (in the order run) was trained to."""
    full = int(records[0].config["steps"])
    found = found_borderline = stopped = spent = 0
    first_grok: int | None = None
    for record, steps in zip(records, steps_trained, strict=True):
        t4 = record.times.t4
        if t4 is not None and steps >= t4:
            found += 1
            found_borderline += borderline(record)
            if first_grok is None:
                first_grok = spent + t4
        if not record.grokked and steps < full:
            stopped += 1
        spent += steps
    return ReplayOutcome(
        stopper=stopper,
        corpus=corpus,
        order=order,
        trials=len(records),
        grokking=sum(r.grokked for r in records),
        found=found,
        non_grokking_stopped=stopped,
        steps=spent,
        steps_unpruned=full * len(records),
        steps_oracle=oracle_steps(records, Budget(full, 1, probe)),
        best_value=best_value,
        steps_to_first_grok=first_grok,
        grokking_borderline=sum(r.grokked and borderline(r) for r in records),
        found_borderline=found_borderline,
        family=records[0].family,
    )


# -- the stoppers compared ----------------------------------------------------------------


def stoppers(
    records: Sequence[RunRecord],
    budget: Budget,
    calibration_records: Sequence[RunRecord],
    probe_fraction: float,
) -> list[Stopper]:
    """Every stopper of the comparison, set up for ``budget``.

    ``calibration_records`` are the other corpora: the held-out HjorthPruners' forecaster
    is fitted on them only, so the corpus replayed is a model family it never saw.
    """
    probe, full, evals = budget.probe, budget.full, budget.eval_every
    held_out = fit_on_records(GrokForecaster(tuple(FEATURE_GROUPS)), calibration_records)
    tuned = tuned_threshold(held_out, calibration_records, probe_fraction)

    def median() -> BasePruner:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=probe)

    return [
        Stopper("no pruning", optuna.pruners.NopPruner, "val_acc"),
        Stopper("oracle (knows the outcome)", lambda: OraclePruner(records, probe), "val_acc"),
        Stopper("HjorthPruner (shipped calibration)", lambda: HjorthPruner(probe), "train_loss", dense=True),
        Stopper(
            "HjorthPruner (shipped calibration, threshold 0.5)",
            lambda: HjorthPruner(probe, threshold=0.5),
            "train_loss",
            dense=True,
        ),
        Stopper(
            "HjorthPruner (held-out family)",
            lambda: HjorthPruner(probe, forecaster=held_out),
            "train_loss",
            dense=True,
        ),
        Stopper(
            "HjorthPruner (held-out family, second look at "
            + ", ".join(f"{f:.0%}" for f in SECOND_LOOK_SHARES)
            + ")",
            lambda: HjorthPruner(probe, forecaster=held_out, rungs=rungs_of(budget)),
            "train_loss",
            dense=True,
        ),
        Stopper(
            f"HjorthPruner (held-out, tuned: threshold {tuned:.2f})",
            # The threshold is on the forecaster's own scale: no recalibration moves it.
            lambda: HjorthPruner(
                probe,
                forecaster=held_out,
                threshold=tuned,
                warm_up_keep_top=None,
                exploration=0,
                recalibrate=False,
            ),
            "train_loss",
            dense=True,
        ),
        Stopper(
            f"keep the top {TOP_K_SHARE:.0%} by val_acc at the probe",
            lambda: TopValAccPruner(probe, TOP_K_SHARE),
            "val_acc",
        ),
        Stopper(
            "keep every trial whose val_loss is falling", lambda: FallingValLossPruner(probe), "val_loss"
        ),
        Stopper("MedianPruner", median, "val_acc"),
        Stopper(
            "PercentilePruner (25th)",
            lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=probe),
            "val_acc",
        ),
        Stopper(
            "SuccessiveHalvingPruner",
            lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=probe, reduction_factor=3),
            "val_acc",
        ),
        Stopper(
            "HyperbandPruner",
            lambda: optuna.pruners.HyperbandPruner(min_resource=probe, max_resource=full, reduction_factor=3),
            "val_acc",
        ),
        Stopper(
            "PatientPruner (Median)",
            lambda: optuna.pruners.PatientPruner(median(), patience=probe // evals),
            "val_acc",
        ),
        Stopper(
            f"ThresholdPruner (val_acc >= {VAL_ACC_FLOOR:g})",
            lambda: optuna.pruners.ThresholdPruner(lower=VAL_ACC_FLOOR, n_warmup_steps=probe),
            "val_acc",
        ),
    ]


def rungs_of(budget: Budget) -> tuple[int, ...]:
    """The second look's rungs in ``budget``: the evaluation steps at
    :data:`~grokforecast.core.policy.SECOND_LOOK_SHARES` of it."""
    return tuple(round(f * budget.full / budget.eval_every) * budget.eval_every for f in SECOND_LOOK_SHARES)


def tuned_threshold(
    forecaster: GrokForecaster,
    records: Sequence[RunRecord],
    probe_fraction: float,
    recall: float = TUNED_RECALL,
) -> float:
    """The highest threshold that keeps ``recall`` of the grokking runs in ``records``.

    Tuned on the corpora the forecaster was fitted on, never on the one replayed.
    """
    grokking = [r for r in usable_records(records) if r.grokked]
    if not grokking:
        return 0.5
    p = np.array([forecaster.predict_proba(probe_history(r, probe_fraction)) for r in grokking])
    return float(math.floor(np.quantile(p, 1.0 - recall) * 100) / 100)


def compare(
    corpora: dict[str, list[RunRecord]],
    probe_fraction: float = 0.1,
    orders: int = 3,
    calibration: Sequence[RunRecord] | None = None,
) -> list[ReplayOutcome]:
    """Every stopper on every corpus, under ``orders`` trial orders.

    The held-out forecasters of a corpus are fitted on ``calibration`` (default: every
    shipped corpus) without the runs of that corpus's model family (``RunRecord.family``).
    """
    pool = load_corpus() if calibration is None else calibration
    outcomes = []
    for corpus, records in corpora.items():
        budget = Budget.of(records, probe_fraction)
        replayed = {r.family for r in records}
        others = [r for r in pool if r.family not in replayed]
        for stopper in stoppers(records, budget, others, probe_fraction):
            outcomes.extend(replay(records, stopper, budget, seed, corpus) for seed in range(orders))
    return outcomes
