"""What a sweep found and what it cost, read back from the study database.

Compute is counted in optimizer steps: a trial costs the steps its run trained
(``steps_trained``); an unpruned sweep would have trained every finished trial to
``full_steps``. The difference is what the forecast (pruned trials) and the hold rule
(grokked trials ended early) saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from grokforecast.vocabulary import DECISION_ATTR, SURPLUS_ATTR


@dataclass(frozen=True)
class SweepSummary:
    finished: int
    complete: int
    pruned: int
    running: int
    failed: int
    grokked: int
    steps_spent: int
    steps_unpruned: int

    @property
    def saved(self) -> float:
        """Fraction of an unpruned sweep's steps that were not trained."""
        return 1.0 - self.steps_spent / self.steps_unpruned if self.steps_unpruned else 0.0


def ran_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials, but those a worker asked for once the target was claimed: they
    ran nothing and are no failure (:class:`~grokforecast.backends.optuna.workers.SurplusTrial`)."""
    return [t for t in study.get_trials(deepcopy=False) if SURPLUS_ATTR not in t.system_attrs]


def summarize(study: optuna.Study, full_steps: int) -> SweepSummary:
    trials = ran_trials(study)
    by_state = {state: [t for t in trials if t.state is state] for state in TrialState}
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    return SweepSummary(
        finished=len(finished),
        complete=len(by_state[TrialState.COMPLETE]),
        pruned=len(by_state[TrialState.PRUNED]),
        running=len(by_state[TrialState.RUNNING]),
        failed=len(by_state[TrialState.FAIL]),
        grokked=sum(bool(t.user_attrs.get("grokked")) for t in finished),
        steps_spent=sum(int(t.user_attrs.get("steps_trained", 0)) for t in finished),
        steps_unpruned=len(finished) * full_steps,
    )


def _fmt(value: object, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def deciding_probability(trial: FrozenTrial) -> float | None:
    """The P(grok) the trial's standing decision was made on: its probe's, or the later
    rung's that pruned it (None where no forecast was made)."""
    return trial.user_attrs.get(DECISION_ATTR, {}).get("probability")


def trial_table(study: optuna.Study) -> str:
    """One line per finished trial: parameters, forecast, outcome, cost."""
    trials = [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    names = sorted({name for t in trials for name in t.params})
    header = ["#", *names, "state", "P(grok)", "decision", "t4", "val acc", "steps"]
    rows = [header]
    for t in trials:
        decision = t.user_attrs.get(DECISION_ATTR, {}).get("decision")
        rows.append(
            [
                str(t.number),
                *(
                    _fmt(t.params.get(n), ".3g")
                    if isinstance(t.params.get(n), float)
                    else _fmt(t.params.get(n))
                    for n in names
                ),
                t.state.name.lower(),
                _fmt(deciding_probability(t), ".2f"),
                _fmt(decision),
                _fmt(t.user_attrs.get("t4")),
                _fmt(t.user_attrs.get("final_val_acc"), ".3f"),
                _fmt(t.user_attrs.get("steps_trained")),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def report_text(study: optuna.Study, full_steps: int) -> str:
    """The end-of-sweep report: trials, outcome counts, compute saved, best trial."""
    summary = summarize(study, full_steps)
    lines = [trial_table(study), ""]
    lines.append(
        f"{summary.finished} trials finished: {summary.complete} complete, {summary.pruned} pruned, "
        f"{summary.grokked} grokked"
        + (f"; {summary.running} running" if summary.running else "")
        + (f"; {summary.failed} failed" if summary.failed else "")
    )
    lines.append(
        f"compute: {summary.steps_spent:,} steps of {summary.steps_unpruned:,} for an unpruned sweep "
        f"({100 * summary.saved:.0f} % saved)"
    )
    if summary.complete:
        best = study.best_trial
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        lines.append(f"best: trial {best.number} ({params}) value {best.value:.4f}")
    return "\n".join(lines)
