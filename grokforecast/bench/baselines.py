"""The stoppers a user would try before a forecaster, as Optuna pruners for the replay.

Each decides once, at the first report at or after the probe step, from the trial's own
intermediate values, and never prunes a trial it let pass:

- :class:`TopValAccPruner`: keep the trials whose validation accuracy at the probe ranks
  in the top share of those probed so far (one rung of successive halving; a recent study
  found this simple rule matches multi-fidelity HPO at a tenth of the compute);
- :class:`FallingValLossPruner`: keep every trial whose validation loss is still falling
  over the last half of the probe window.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial


def _probe_value(trial: FrozenTrial, probe_step: int) -> float | None:
    """The trial's first intermediate value at or after ``probe_step``."""
    steps = sorted(step for step in trial.intermediate_values if step >= probe_step)
    return trial.intermediate_values[steps[0]] if steps else None


def _is_first_check_past_probe(trial: FrozenTrial, probe_step: int) -> bool:
    """Whether the newest report is the trial's first at or after the probe (its one decision)."""
    return sum(step >= probe_step for step in trial.intermediate_values) == 1


class TopValAccPruner(BasePruner):
    """Prune at the probe unless the trial's value (validation accuracy, maximized) ranks
    in the top ``share`` of the trials probed so far; keep everyone until ``n_min_probed``.

    Example:

        >>> pruner = TopValAccPruner(probe_step=100, share=1 / 3)
    """

    def __init__(self, probe_step: int, share: float, n_min_probed: int = 5) -> None:
        self.probe_step, self.share, self.n_min_probed = probe_step, share, n_min_probed

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.last_step is None or not _is_first_check_past_probe(trial, self.probe_step):
            return False
        others = [
            value
            for other in study.get_trials(deepcopy=False)
            if other.number != trial.number and (value := _probe_value(other, self.probe_step)) is not None
        ]
        own = _probe_value(trial, self.probe_step)
        if own is None or len(others) + 1 < self.n_min_probed:
            return False
        return own < float(np.quantile([*others, own], 1.0 - self.share))


class FallingValLossPruner(BasePruner):
    """Prune at the probe unless the trial's value (validation loss) is falling: the
    least-squares slope of its log over the last half of the probe window is negative.

    Example:

        >>> pruner = FallingValLossPruner(probe_step=100)
    """

    def __init__(self, probe_step: int) -> None:
        self.probe_step = probe_step

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.last_step is None or not _is_first_check_past_probe(trial, self.probe_step):
            return False
        recent = sorted(
            (step, value)
            for step, value in trial.intermediate_values.items()
            if self.probe_step / 2 <= step <= trial.last_step
        )
        if len(recent) < 2:
            return False
        steps, values = np.array(recent).T
        slope = np.polyfit(steps, np.log(np.maximum(values, 1e-12)), 1)[0]
        return not slope < 0
