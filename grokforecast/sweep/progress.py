"""How a running sweep shows its progress: a bar on a terminal, a line per trial in a log.

Both are redrawn from the study database (:func:`~grokforecast.sweep.summary.summarize`),
so they are right however many workers or hosts take part. A bar redrawn every second
fills a redirected log with carriage returns; when stderr is not a terminal the sweep
prints one line each time a trial finishes instead.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from grokforecast.sweep.summary import SweepSummary, deciding_probability, ran_trials, summarize
from grokforecast.vocabulary import STOPPED_ATTR

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class SweepProgress(Protocol):
    def update(self, study: optuna.Study) -> None:
        """Show the study as it is now."""
        ...

    def close(self) -> None: ...


def sweep_progress(n_trials: int, full_steps: int, enabled: bool = True) -> SweepProgress:
    """A bar when stderr is a terminal, else a line per finished trial (nothing if not ``enabled``)."""
    if enabled and not sys.stderr.isatty():
        return ProgressLines(n_trials, full_steps, sys.stderr)
    return ProgressBar(n_trials, full_steps, enabled)


class ProgressBar:
    """Trials finished of ``n_trials``, with pruned, grokked, running and compute saved."""

    def __init__(self, n_trials: int, full_steps: int, enabled: bool = True) -> None:
        self.full_steps = full_steps
        self._bar = tqdm(total=n_trials, unit="trial", disable=not enabled, dynamic_ncols=True)

    def update(self, study: optuna.Study) -> None:
        summary = summarize(study, self.full_steps)
        self._bar.n = min(summary.finished, self._bar.total)
        self._bar.set_postfix(
            pruned=summary.pruned,
            grokked=summary.grokked,
            running=summary.running,
            saved=f"{100 * summary.saved:.0f}%",
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class ProgressLines:
    """One line per trial that ended since the last update, e.g.
    ``trial 3 pruned at step 150 (P(grok) 0.08); 4 of 20 finished, 41 % saved``."""

    def __init__(self, n_trials: int, full_steps: int, stream: TextIO) -> None:
        self.n_trials, self.full_steps, self.stream = n_trials, full_steps, stream
        self._shown: set[int] | None = None  # trials that had ended when the sweep began: not news

    def update(self, study: optuna.Study) -> None:
        ended = [t for t in ran_trials(study) if t.state in _ENDED]
        if self._shown is None:
            self._shown = {t.number for t in ended}
            return
        new = [t for t in ended if t.number not in self._shown]
        if not new:
            return
        summary = summarize(study, self.full_steps)
        for trial in sorted(new, key=lambda t: t.number):
            print(f"{trial_line(trial)}; {_totals(summary, self.n_trials)}", file=self.stream, flush=True)
            self._shown.add(trial.number)

    def close(self) -> None:
        pass


def trial_line(trial: FrozenTrial) -> str:
    """What became of one ended trial, in a few words."""
    attrs = trial.user_attrs
    steps = attrs.get("steps_trained")
    at = f" at step {steps}" if steps is not None else ""
    probability = deciding_probability(trial)
    forecast = f" (P(grok) {probability:.2f})" if probability is not None else ""
    if trial.state is TrialState.FAIL:
        return f"trial {trial.number} failed (resume retries it from its checkpoint)"
    if trial.state is TrialState.PRUNED:
        verb = "diverged" if attrs.get(STOPPED_ATTR) == "diverged" else "pruned"
        return f"trial {trial.number} {verb}{at}{forecast}"
    grokked = "grokked" if attrs.get("grokked") else "did not grok"
    return f"trial {trial.number} {grokked}{at}{forecast}, value {trial.value:.4g}"


def _totals(summary: SweepSummary, n_trials: int) -> str:
    return f"{summary.finished} of {n_trials} finished, {100 * summary.saved:.0f} % saved"
