"""``HjorthPruner``: an Optuna pruner that keeps the trials forecast to grok."""

from __future__ import annotations

import logging
import math

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from grokforecast.forecast.features import HYPERPARAMETERS
from grokforecast.forecast.forecaster import GrokForecaster, pretrained_inputs_for
from grokforecast.pruning.calibration import Calibration, fit_calibration, grok_label
from grokforecast.pruning.decision import (
    DECISION_ATTR,
    PROBE_ATTR,
    Decision,
    DecisionRecord,
    already_grokked,
    probe_record,
    settled,
)
from grokforecast.pruning.monitor import active_history_source

logger = logging.getLogger(__name__)

#: The series an objective may report as intermediate values.
SERIES = ("train_loss", "val_loss", "val_acc")


class HjorthPruner(BasePruner):
    """Prune, once, at the probe step, the trials that are forecast not to grok.

    Ordinary pruners compare validation metrics early and so stop exactly the runs that
    grok late. This pruner lets every trial run to ``probe_step``, forecasts from the
    curves so far whether it will grok (:class:`~grokforecast.GrokForecaster`), prunes it
    there if not, and otherwise never prunes it. A trial whose validation accuracy (from a
    :class:`~grokforecast.Monitor`, or ``series="val_acc"``) has already reached 0.95 by
    the probe has grokked and is kept whatever the forecast.

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
            The decision is made at the first check at or after this step; before it the
            pruner never prunes, after it the decision stands (a kept trial is never
            pruned later).
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
            Prune when the forecast P(grok) is below this (ignored with ``keep_top``).
            In the replay benchmark on the shipped corpora (in-sample) the default 0.2
            kept 93-100 % of the grokking runs at 1.06-1.25x the oracle's compute; 0.5
            kept 91-100 % at 1.00-1.19x (BENCHMARKS.md).
        keep_top:
            If given, prune when the trial's forecast ranks below this fraction of the
            trials probed so far in the study (itself included); until ``n_min_probed``
            trials have been probed, keep.
        n_min_probed:
            Trials to probe before ``keep_top`` ranks anyone.
        exploration:
            Probability that a trial the rule would prune runs to full length anyway
            (decision ``explore``), so that recalibration also sees low-forecast trials.
            The draw is a function of ``seed`` and the trial number: every worker agrees.
        recalibrate:
            Refit the forecast's probability scale on the study's completed, probed trials
            (Platt scaling) once ``min_calibration_trials`` of them with both outcomes
            exist.
        grok_value:
            Objective value that counts as grokked for recalibration (``>=`` when the
            study maximizes, ``<=`` when it minimizes). Trials with a ``grokked`` user
            attribute use that instead. With neither, a trial teaches nothing.
        hyperparameters:
            Where the trial's learning rate, weight decay and data fraction are among its
            parameters, as ``{"lr": ..., "weight_decay": ..., "data_fraction": ...}``
            (default: those very names). When a trial has all three and a Monitor supplies
            every curve, the forecast uses them too (``"full+hyperparameters"``), which
            predicts markedly better (BENCHMARKS.md).
        seed:
            Seed of the exploration draws.
    """

    def __init__(
        self,
        probe_step: int,
        *,
        series: str = "train_loss",
        forecaster: GrokForecaster | None = None,
        threshold: float = 0.2,
        keep_top: float | None = None,
        n_min_probed: int = 5,
        exploration: float = 0.05,
        recalibrate: bool = True,
        min_calibration_trials: int = 10,
        grok_value: float | None = 0.95,
        hyperparameters: dict[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        if probe_step < 1:
            raise ValueError(f"probe_step must be at least 1 but got {probe_step}")
        if series not in SERIES:
            raise ValueError(f"series must be one of {SERIES} but got {series!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] but got {threshold}")
        if keep_top is not None and not 0.0 < keep_top <= 1.0:
            raise ValueError(f"keep_top must lie in (0, 1] but got {keep_top}")
        if n_min_probed < 1:
            raise ValueError(f"n_min_probed must be at least 1 but got {n_min_probed}")
        if not 0.0 <= exploration <= 1.0:
            raise ValueError(f"exploration must lie in [0, 1] but got {exploration}")
        if min_calibration_trials < 2:
            raise ValueError(f"min_calibration_trials must be at least 2 but got {min_calibration_trials}")
        if forecaster is not None and not forecaster.fitted:
            raise ValueError("forecaster is not fitted; call fit() or use GrokForecaster.pretrained()")
        self.probe_step = probe_step
        self.series = series
        self.threshold = threshold
        self.keep_top = keep_top
        self.n_min_probed = n_min_probed
        self.exploration = exploration
        self.recalibrate = recalibrate
        self.min_calibration_trials = min_calibration_trials
        self.grok_value = grok_value
        self.hyperparameters = dict(hyperparameters or {name: name for name in HYPERPARAMETERS})
        if set(self.hyperparameters) != set(HYPERPARAMETERS):
            raise ValueError(
                f"hyperparameters must map exactly {list(HYPERPARAMETERS)} to the trial's "
                f"parameter names but got {hyperparameters}"
            )
        self.seed = seed
        self._custom_forecaster = forecaster
        self._pretrained: dict[str, GrokForecaster] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if math.isnan(trial.intermediate_values[step]):
            return True
        if step < self.probe_step:
            return False
        earlier = trial.system_attrs.get(PROBE_ATTR)
        if earlier is not None:
            return earlier["decision"] == Decision.PRUNE.value
        record = self._decide(study, trial, step)
        study._storage.set_trial_user_attr(
            trial._trial_id, DECISION_ATTR, {**record.to_dict(), "reason": record.reason}
        )
        logger.info("trial %d: %s", trial.number, record.reason)
        return record.decision is Decision.PRUNE

    # -- the decision ----------------------------------------------------------------

    def _decide(self, study: optuna.Study, trial: FrozenTrial, step: int) -> DecisionRecord:
        history = self._history(study, trial, step)
        key, forecaster = self._forecaster_for(history)
        try:
            assessment = forecaster.assess(history)
        except ValueError as error:
            raise ValueError(
                f"HjorthPruner cannot forecast trial {trial.number} at step {step}: {error}; "
                f"report more often or raise probe_step"
            ) from None
        logit = assessment.logit
        calibration = self._calibration(study, key)
        probability = calibration.probability(logit)
        grokked_rule = already_grokked(history)
        prune, rule = (False, grokked_rule) if grokked_rule else self._rule(study, trial, probability)
        decision = settled(prune, self.seed, trial.number, self.exploration)
        study._storage.set_trial_system_attr(
            trial._trial_id,
            PROBE_ATTR,
            probe_record(decision, logit, probability, key, grokked_at_probe=grokked_rule is not None),
        )
        return DecisionRecord.of_forecast(decision, step, probability, rule, assessment, calibration.trials)

    def _history(self, study: optuna.Study, trial: FrozenTrial, step: int) -> dict[str, np.ndarray]:
        source = active_history_source(study.study_name, trial.number)
        if source is not None:
            history: dict = source.history(until=step)
        else:
            steps = np.array(sorted(s for s in trial.intermediate_values if s <= step))
            values = np.array([trial.intermediate_values[s] for s in steps])
            history = {self.series: values, f"{self.series}_steps": steps}
        params = {name: trial.params.get(param) for name, param in self.hyperparameters.items()}
        if "hyperparameters" not in history and all(value is not None for value in params.values()):
            history["hyperparameters"] = params
        return history

    def _forecaster_for(self, history: dict[str, np.ndarray]) -> tuple[str, GrokForecaster]:
        if self._custom_forecaster is not None:
            return "custom", self._custom_forecaster
        key = pretrained_inputs_for(history, self.series)
        if key not in self._pretrained:
            self._pretrained[key] = GrokForecaster.pretrained(key)
        return key, self._pretrained[key]

    def _calibration(self, study: optuna.Study, key: str) -> Calibration:
        if not self.recalibrate:
            return Calibration()
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return fit_calibration(
            completed, grok_label(study, self.grok_value), key, self.min_calibration_trials
        )

    def _rule(self, study: optuna.Study, trial: FrozenTrial, probability: float) -> tuple[bool, str]:
        if self.keep_top is None:
            return probability < self.threshold, f"threshold {self.threshold:g}"
        probed = [
            t.system_attrs[PROBE_ATTR]["probability"]
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and PROBE_ATTR in t.system_attrs
        ]
        if len(probed) + 1 < self.n_min_probed:
            return (
                False,
                f"keep_top {self.keep_top:g} (warm-up: {len(probed) + 1} of {self.n_min_probed} probed)",
            )
        cutoff = float(np.quantile([*probed, probability], 1.0 - self.keep_top))
        return (
            probability < cutoff,
            f"keep_top {self.keep_top:g} of {len(probed) + 1} probed (cut-off {cutoff:.3f})",
        )
