"""``HjorthPruner``: the stopping policy as an Optuna pruner."""

from __future__ import annotations

import logging
import math

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from grokforecast.backends.optuna.monitor import HistorySource, active_history_source
from grokforecast.core.decision import Decision, DecisionRecord
from grokforecast.core.policy import PolicySettings, StoppingPolicy, StudyContext, Verdict
from grokforecast.errors import ConfigError
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.history import History, complete_sets, hyperparameters_from, looks_like_accuracy
from grokforecast.sweep.outcomes import grok_label, probed_outcomes, probed_probabilities
from grokforecast.vocabulary import (
    DECIDED_ATTR,
    DECISION_ATTR,
    PROBE_ATTR,
    RUNG_DECISIONS_ATTR,
    RUNG_FORECASTS_ATTR,
)

logger = logging.getLogger(__name__)


class HjorthPruner(BasePruner):
    """Prune, at the probe step, the trials that are forecast not to grok.

    Ordinary pruners compare validation metrics early and so stop exactly the runs that
    grok late. This pruner lets every trial run to ``probe_step``, forecasts from the
    curves so far whether it will grok (:class:`~grokforecast.GrokForecaster`), prunes it
    there if not, and otherwise never prunes it. A trial whose validation accuracy (from a
    :class:`~grokforecast.Monitor`, or ``series="val_acc"``) has already reached
    ``grok_threshold`` by the probe has grokked and is kept whatever the forecast. A NaN
    or infinite value prunes the trial at once, before the probe too (it diverged); a
    history the forecaster cannot read keeps it, with the reason in its decision and one
    warning naming the fix. Values that read as an accuracy (all in [0, 1], rising, in a
    maximizing study) reported to a pruner set for a loss are read as ``"val_acc"``, and
    the decision says so. Every
    decision is stored as the trial's ``grokforecast_decision`` user attribute. With
    ``rungs``, a kept trial is judged again at each of those steps and pruned there when its
    forecast has fallen to the bottom ``rung_prune_share`` of the trials judged at the same
    rung; those judgements are its ``grokforecast_rungs`` user attribute, and one that
    prunes is its decision. The rule is :class:`~grokforecast.core.policy.StoppingPolicy`,
    the same as the Ray backend's.

    Example:

        >>> import numpy as np
        >>> import optuna
        >>> from grokforecast import HjorthPruner
        >>> def objective(trial):
        ...     wd = trial.suggest_float("weight_decay", 0.01, 3.0, log=True)
        ...     rng = np.random.default_rng(trial.number)
        ...     for step in range(400):
        ...         wiggle = 1 + wd * 0.1 * np.sin(step / 3) + 0.01 * rng.normal()
        ...         trial.report(float(np.exp(-step / 50) * wiggle + 1e-3), step)
        ...         if trial.should_prune():
        ...             raise optuna.TrialPruned()
        ...     return wd
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(direction="maximize", pruner=HjorthPruner(probe_step=100))
        >>> study.optimize(objective, n_trials=5)
        >>> {t.user_attrs["grokforecast_decision"]["step"] for t in study.trials}  # decided at the probe
        {100}
        >>> {t.last_step for t in study.trials} <= {100, 399}  # pruned there, or run to the end
        True

    Args:
        probe_step:
            The decision is made at the first check whose newest measurement is at or
            after this step; before it the pruner prunes only a diverged trial, after it
            the decision stands (unless ``rungs`` judge a kept trial again).
        series:
            What the trial's intermediate values are: ``"train_loss"`` (the paper's
            signal), ``"val_loss"`` or ``"val_acc"``. Losses are read as lower-is-better
            and accuracy as higher-is-better, whatever the study's direction. A
            :class:`~grokforecast.Monitor` in the objective supplies the other series too.
        forecaster:
            A fitted :class:`~grokforecast.GrokForecaster`; default: the shipped one for
            what the trial provides (``"full"`` with a Monitor logging every series,
            else the one for ``series`` alone).
        threshold:
            Prune when the forecast P(grok) is below this, once the study model has
            learned (ignored with ``keep_top``); ``BENCHMARKS.md`` shows what the
            default keeps and spends.
        keep_top:
            If given, prune when the trial's forecast ranks below this fraction of the
            trials probed so far in the study (itself included); until ``n_min_probed``
            trials have been probed, keep.
        warm_up_keep_top:
            Until the study model has learned from ``min_calibration_trials`` trials of
            both outcomes, decide by rank instead of by ``threshold``: keep a trial whose
            forecast ranks in this top fraction of the trials probed so far (on a new
            model family the shipped forecast ranks trials far better than it scales
            them; the trials kept are what the study model learns from). None: the
            threshold from the start.
        n_min_probed:
            Trials to probe before ``keep_top`` or ``warm_up_keep_top`` ranks anyone.
        exploration:
            Probability that a trial the rule would prune runs to full length anyway
            (decision ``explore``), so that the study model also sees low-forecast trials.
            The draw is a function of ``seed`` and the trial number: every worker agrees.
        recalibrate:
            Update the forecast with the study's completed, probed trials once
            ``min_calibration_trials`` of them with both outcomes exist: a Bayesian
            logistic model whose prior is the shipped forecaster learns how its forecasts
            turn out on this study's model (:mod:`grokforecast.core.study_model`). It is
            refitted from the trials stored in the study, so every worker and a resumed
            study continue from the same model.
        min_calibration_trials:
            See ``recalibrate``.
        grok_threshold:
            Validation accuracy that counts as grokked.
        rungs:
            Steps after ``probe_step`` at which a kept trial is judged again (for example
            a quarter and a half of the budget, what a study file takes by default);
            default none, since the pruner does not know a trial's budget.
        rung_prune_share:
            At each rung, the bottom share, by forecast, of the trials judged there that
            is pruned (ranked once ``n_min_probed`` trials have been judged there).
        grok_value:
            Objective value that counts as grokked for the study model (``>=`` when the
            study maximizes, ``<=`` when it minimizes); default: ``grok_threshold``.
            Trials with a ``grokked`` user attribute use that instead.
        hyperparameters:
            Where the trial's learning rate, weight decay and data fraction are among its
            parameters, as ``{"lr": ..., "weight_decay": ..., "data_fraction": ...}``
            (default: recognised by their common spellings, such as ``lr`` or
            ``learning_rate``, ``weight_decay`` or ``wd``, ``data_fraction`` or
            ``train_fraction``). When a trial has them, the forecast uses them besides
            the curves, whichever series are reported (``"full+hyperparameters"`` with a
            Monitor, ``"val_loss+hyperparameters"`` with validation loss alone, ...),
            which predicts markedly better (``BENCHMARKS.md``); the decision record's
            ``forecaster`` names the inputs used. A study that sweeps the learning rate
            and weight decay on a fixed data set (or the data fraction alone) gets the
            features of the ones it has, the others read at the shipped corpus's mean
            (the record's note says so), so the mapping may name those alone.
        fitted_without:
            Model families whose shipped corpora the forecaster is fitted without
            (``("modular_transformer",)``, ...; :func:`~grokforecast.corpus.shipped_families`
            lists them): on a study of such a family, the forecast a model the project never
            recorded gets. The calibrations are refitted when first needed, a few seconds each.
        seed:
            Seed of the exploration draws.
    """

    def __init__(
        self,
        probe_step: int,
        *,
        series: str = PolicySettings.series,
        forecaster: GrokForecaster | None = None,
        threshold: float = PolicySettings.threshold,
        keep_top: float | None = PolicySettings.keep_top,
        warm_up_keep_top: float | None = PolicySettings.warm_up_keep_top,
        n_min_probed: int = PolicySettings.n_min_probed,
        exploration: float = PolicySettings.exploration,
        recalibrate: bool = PolicySettings.recalibrate,
        min_calibration_trials: int = PolicySettings.min_calibration_trials,
        grok_threshold: float = PolicySettings.grok_threshold,
        rungs: tuple[int, ...] = PolicySettings.rungs,
        rung_prune_share: float = PolicySettings.rung_prune_share,
        grok_value: float | None = None,
        hyperparameters: dict[str, str] | None = None,
        fitted_without: tuple[str, ...] = PolicySettings.fitted_without,
        seed: int = PolicySettings.seed,
    ) -> None:
        settings = PolicySettings.of(locals())  # every policy keyword, by name
        self.policy = StoppingPolicy(settings, forecaster)
        self.grok_value = grok_threshold if grok_value is None else grok_value
        self.hyperparameters = dict(hyperparameters) if hyperparameters is not None else None
        self._warned_series = False
        mapped = set(self.hyperparameters or ())
        if self.hyperparameters is not None and (not mapped or complete_sets(mapped) != mapped):
            raise ConfigError(
                f"hyperparameters must map lr and weight_decay, or data_fraction, or all three, to the "
                f"trial's parameter names but got {hyperparameters}"
            )

    @property
    def settings(self) -> PolicySettings:
        return self.policy.settings

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        last_step = trial.last_step
        if last_step is None:
            return False
        earlier = trial.system_attrs.get(DECIDED_ATTR)
        judged = trial.system_attrs.get(RUNG_FORECASTS_ATTR, {})
        if earlier is not None and not self.policy.judged_again(Decision(earlier), len(judged)):
            return earlier == Decision.PRUNE.value
        source = active_history_source(study.study_name, trial.number)
        if earlier is not None:
            return self._judge_again(study, trial, source, last_step, judged)
        if not math.isfinite(trial.intermediate_values[last_step]):
            history = self._history(trial, source, last_step, self.settings.series)
            record = self.policy.diverged(history) or DecisionRecord.diverged(self.settings.series, last_step)
            return self._store(study, trial, Verdict(record, None))
        newest = source.newest_step if source is not None else None
        step = last_step if newest is None else max(last_step, newest)
        if not self.policy.is_due(step):
            return False
        series, note = self._reported_series(study, trial, source)
        history = self._history(trial, source, step, series)
        verdict = self.policy.decide(history, trial.number, self._context(study, trial), step)
        return self._store(study, trial, verdict.noted(note))

    def _judge_again(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        source: HistorySource | None,
        last_step: int,
        judged: dict[str, float | None],
    ) -> bool:
        """A kept trial at a later rung, if it has reached one it was not judged at."""
        newest = source.newest_step if source is not None else None
        step = last_step if newest is None else max(last_step, newest)
        rung = self.policy.rung_due(step, len(judged))
        if rung is None:
            return False
        series, note = self._reported_series(study, trial, source)
        history = self._history(trial, source, step, series)
        at_rung = [
            forecast
            for other in study.get_trials(deepcopy=False)
            if other.number != trial.number
            and (forecast := other.system_attrs.get(RUNG_FORECASTS_ATTR, {}).get(str(rung))) is not None
        ]
        verdict = self.policy.judge_again(history, StudyContext(at_rung=at_rung), rung, step)
        verdict = verdict.noted(note)
        storage, trial_id = study._storage, trial._trial_id
        skipped = {str(k): None for k in range(len(judged) + 1, rung)}  # passed in one report
        forecasts = {**judged, **skipped, str(rung): verdict.rung_forecast}
        storage.set_trial_system_attr(trial_id, RUNG_FORECASTS_ATTR, forecasts)
        stored = storage.get_trial(trial_id).user_attrs  # the trial's own copy may be older
        records = [*stored.get(RUNG_DECISIONS_ATTR, []), verdict.record.to_dict()]
        storage.set_trial_user_attr(trial_id, RUNG_DECISIONS_ATTR, records)
        if verdict.stops:
            storage.set_trial_user_attr(trial_id, DECISION_ATTR, verdict.record.to_dict())
            storage.set_trial_system_attr(trial_id, DECIDED_ATTR, Decision.PRUNE.value)
        logger.info("trial %d: %s", trial.number, verdict.record.reason)
        return verdict.stops

    def _reported_series(
        self, study: optuna.Study, trial: FrozenTrial, source: HistorySource | None
    ) -> tuple[str, str]:
        """What the intermediate values are: ``series``, or ``"val_acc"`` when a loss was
        expected but they read as an accuracy in a maximizing study (with a note saying so)."""
        series = self.settings.series
        if (
            source is not None
            or series == "val_acc"
            or study.directions != [optuna.study.StudyDirection.MAXIMIZE]
            or not looks_like_accuracy(trial.intermediate_values)
        ):
            return series, ""
        note = (
            f"the reported values were read as val_acc, not {series}: they lie in [0, 1], rise, "
            "and the study maximizes; pass series='val_acc' to say so"
        )
        if not self._warned_series:
            self._warned_series = True
            logger.warning("HjorthPruner: %s (warned once)", note)
        return "val_acc", note

    def _history(self, trial: FrozenTrial, source: HistorySource | None, step: int, series: str) -> History:
        """The Monitor's (or the sweep trainer's) curves, else the intermediate values read
        as ``series``, with the trial's hyperparameters when it has them."""
        if source is not None:
            history = source.history(until=step)
        else:
            history = History.from_intermediate_values(trial.intermediate_values, series, step)
        if history.hyperparameters is None:
            history = history.with_hyperparameters(hyperparameters_from(trial.params, self.hyperparameters))
        return history

    def _store(self, study: optuna.Study, trial: FrozenTrial, verdict: Verdict) -> bool:
        if verdict.probe is not None:
            study._storage.set_trial_system_attr(trial._trial_id, PROBE_ATTR, verdict.probe.to_dict())
        study._storage.set_trial_user_attr(trial._trial_id, DECISION_ATTR, verdict.record.to_dict())
        study._storage.set_trial_system_attr(trial._trial_id, DECIDED_ATTR, verdict.record.decision.value)
        logger.info("trial %d: %s", trial.number, verdict.record.reason)
        return verdict.stops

    def _context(self, study: optuna.Study, trial: FrozenTrial) -> StudyContext:
        settings = self.settings
        if not settings.recalibrate and settings.keep_top is None and settings.warm_up_keep_top is None:
            return StudyContext()
        trials = study.get_trials(deepcopy=False)
        outcomes = ()
        if settings.recalibrate:
            completed = [t for t in trials if t.state is TrialState.COMPLETE]
            outcomes = tuple(probed_outcomes(completed, grok_label(study, self.grok_value)).values())
        ranks = settings.keep_top is not None or settings.warm_up_keep_top is not None
        probed = probed_probabilities(trials, trial.number) if ranks else ()
        return StudyContext(outcomes, probed)
