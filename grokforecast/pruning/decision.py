"""What the pruner decided about a trial, and why, as values a dashboard can show.

The decision is made once per trial, at its probe step:

- ``KEEP``: the forecast says the run will grok; it continues to full length.
- ``PRUNE``: the forecast says it will not; the trial ends PRUNED at the probe step.
- ``EXPLORE``: the forecast says prune, but the trial was drawn to run to full length
  anyway, so that the study's own completed trials include low-forecast runs and the
  online recalibration is not biased towards the trials it already liked.

A run whose validation accuracy has already reached the grokking level by its probe step
is kept whatever the forecast says (:func:`already_grokked`): there is nothing left to
forecast, and pruning it would drop what may be the study's best trial.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from grokforecast.curves import DEFAULT_GROK_THRESHOLD

if TYPE_CHECKING:
    from grokforecast.forecast.forecaster import Assessment


class Decision(enum.StrEnum):
    KEEP = "keep"
    PRUNE = "prune"
    EXPLORE = "explore"


#: User attribute holding the :class:`DecisionRecord` as a dict (shown by dashboards).
DECISION_ATTR = "grokforecast_decision"
#: System attribute with what later trials need: the forecast's logit at the probe step.
PROBE_ATTR = "grokforecast:probe"
#: User attribute an objective may set to say whether the finished trial grokked.
GROKKED_ATTR = "grokked"
#: Key of a probe record (:data:`PROBE_ATTR`) set when the run had grokked by its probe.
GROKKED_AT_PROBE = "grokked_at_probe"


@dataclass(frozen=True)
class DecisionRecord:
    """A decision with its reason: the forecast, the rule it was held against, the step."""

    decision: Decision
    step: int
    probability: float
    rule: str
    main_features: dict[str, float]
    calibrated_on: int
    #: Every feature the forecaster read, by name (the early spectral activity among them).
    features: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of_forecast(
        cls,
        decision: Decision,
        step: int,
        probability: float,
        rule: str,
        assessment: Assessment,
        calibrated_on: int,
    ) -> DecisionRecord:
        """The record of a decision taken on ``assessment``, the forecaster's reading."""
        return cls(
            decision,
            step,
            probability,
            rule,
            assessment.main_features,
            calibrated_on,
            assessment.features,
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "decision": self.decision.value}

    @property
    def reason(self) -> str:
        features = ", ".join(f"{name} {value:+.2f}" for name, value in self.main_features.items())
        return (
            f"{self.decision.value} at step {self.step}: P(grok) = {self.probability:.3f} against "
            f"{self.rule}; main features (logit contributions): {features}"
        )


def probe_record(
    decision: Decision, logit: float, probability: float, forecaster: str, grokked_at_probe: bool
) -> dict[str, Any]:
    """What a stopper keeps of a forecast at the probe (the Optuna pruner in the trial's
    :data:`PROBE_ATTR`, the Ray scheduler in its state): what later trials and the
    recalibration need."""
    return {
        "decision": decision.value,
        "logit": logit,
        "probability": probability,
        "forecaster": forecaster,
        GROKKED_AT_PROBE: grokked_at_probe,
    }


def settled(prune: bool, seed: int, trial: int | str, exploration: float) -> Decision:
    """``KEEP`` or ``PRUNE`` as the rule says, or ``EXPLORE`` when a trial the rule would
    prune is drawn to run on (:func:`drawn_to_explore`)."""
    if not prune:
        return Decision.KEEP
    return Decision.EXPLORE if drawn_to_explore(seed, trial, exploration) else Decision.PRUNE


def drawn_to_explore(seed: int, trial: int | str, exploration: float) -> bool:
    """Whether trial ``trial`` (its number, or another stable name) runs on although its
    rule says prune: a function of the seed and the trial only, so that every worker, and
    both the Optuna and the Ray backend, draw the same."""
    return random.Random(f"{seed}:{trial}").random() < exploration


def already_grokked(history: Mapping[str, Any]) -> str | None:
    """The rule that keeps a run which has grokked by its probe step, as the decision's
    rule text; None when ``history``'s validation accuracy has not reached
    ``DEFAULT_GROK_THRESHOLD`` (or is not recorded).

    The forecast is a guess at whether a run will reach that accuracy, read mostly from
    curves of runs still on their way; for a run that has reached it the answer is known,
    and that run may well be the study's best (on digits, one at 97 % by step 110 is
    forecast at 0.06, its curves and hyperparameters being those of a non-grokker).
    """
    accuracy = np.asarray(history.get("val_acc", ()), dtype=float)
    accuracy = accuracy[np.isfinite(accuracy)]
    if accuracy.size == 0 or accuracy.max() < DEFAULT_GROK_THRESHOLD:
        return None
    best = float(accuracy.max())
    return f"val_acc {best:.3f} already >= {DEFAULT_GROK_THRESHOLD:g} (grokked, nothing to forecast)"
