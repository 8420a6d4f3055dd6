"""What a study's finished trials teach the stopping policy, read from the study database.

Both backends keep their trials in an Optuna study, so both read outcomes the same way:
the Optuna pruner at every decision, the Ray backend when a resumed sweep starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from grokforecast.core.decision import Probe
from grokforecast.core.study_model import Outcome
from grokforecast.vocabulary import GROKKED_ATTR, PROBE_ATTR

GrokLabel = Callable[[FrozenTrial], "bool | None"]


def grok_label(study: optuna.Study, grok_value: float | None) -> GrokLabel:
    """Whether a finished trial grokked: its ``grokked`` user attribute, else its value
    against ``grok_value`` in the study's direction, else unknown (None)."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE

    def label(trial: FrozenTrial) -> bool | None:
        if GROKKED_ATTR in trial.user_attrs:
            return bool(trial.user_attrs[GROKKED_ATTR])
        if grok_value is None or trial.value is None:
            return None
        return trial.value >= grok_value if maximize else trial.value <= grok_value

    return label


def stored_probe(trial: FrozenTrial) -> Probe | None:
    """The probe record a stopper stored on ``trial``, if it was forecast."""
    data = trial.system_attrs.get(PROBE_ATTR)
    return None if data is None else Probe.from_dict(data)


def probed_outcomes(trials: Iterable[FrozenTrial], label: GrokLabel) -> dict[int, Outcome]:
    """The outcomes of the completed, probed trials that teach
    (:attr:`~grokforecast.core.decision.Probe.teaches`) and whose label is known, by number."""
    outcomes = {}
    for trial in trials:
        probe = stored_probe(trial)
        grokked = label(trial) if trial.state == TrialState.COMPLETE else None
        if probe is not None and grokked is not None and probe.teaches:
            outcomes[trial.number] = probe.outcome(bool(grokked))
    return outcomes


def probed_probabilities(trials: Iterable[FrozenTrial], other_than: int) -> list[float]:
    """The P(grok) of every probed trial but ``other_than`` (what ``keep_top`` ranks against)."""
    return [
        probe.probability
        for trial in trials
        if trial.number != other_than and (probe := stored_probe(trial)) is not None
    ]
