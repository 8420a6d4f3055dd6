"""Trials and curves of a study as CSV files, for pandas, spreadsheets and papers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import sqlalchemy as sa

from grokforecast.sweep.storage import read_curves


def export_trials(study: optuna.Study, path: Path) -> int:
    """One row per trial: number, state, value, every parameter and user attribute."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({name for t in trials for name in t.user_attrs})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", *params, *attrs])
        for t in trials:
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    t.value,
                    *(t.params.get(name) for name in params),
                    *(_cell(t.user_attrs.get(name)) for name in attrs),
                ]
            )
    return len(trials)


def _cell(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


def export_curves(engine: sa.Engine, study_name: str, path: Path) -> int:
    """Long format, one row per point: trial, series, step, value."""
    rows = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "series", "step", "value"])
        for number, by_series in sorted(read_curves(engine, study_name).items()):
            for series, (steps, values) in sorted(by_series.items()):
                writer.writerows(
                    (number, series, int(s), float(v)) for s, v in zip(steps, values, strict=True)
                )
                rows += len(steps)
    return rows
