"""Trials and curves of a study as CSV or Parquet files, for pandas, spreadsheets and papers.

Two tables: *trials* (one row per trial: number, state, value, every parameter and user
attribute; dicts and lists as JSON text) and *curves* (long format, one row per point:
trial, series, step, value). CSV needs nothing beyond the standard library; Parquet keeps
the column types and is ~10x smaller on dense curves, and needs ``pyarrow``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import sqlalchemy as sa

from grokforecast.errors import GrokforecastError
from grokforecast.sweep.storage import read_curves

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
CURVE_COLUMNS = ("trial", "series", "step", "value")


def file_stem(study_name: str) -> str:
    """A file name made from a study name: never a path (``../x`` or ``a/b`` stay in
    the folder they are written to), other characters than letters, digits, ``_``, ``-``
    and ``.`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", study_name).lstrip(".") or "study"


def export_trials(study: optuna.Study, path: Path, fmt: ExportFormat = "csv") -> int:
    """Write one row per trial to ``path``; returns the number of trials."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({name for t in trials for name in t.user_attrs})
    columns = ["number", "state", "value", *params, *attrs]
    rows = [
        [
            t.number,
            t.state.name,
            t.value,
            *(t.params.get(name) for name in params),
            *(_cell(t.user_attrs.get(name)) for name in attrs),
        ]
        for t in trials
    ]
    if fmt == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
    else:
        pa, pq = _pyarrow()
        table = pa.table({name: _column(pa, [row[i] for row in rows]) for i, name in enumerate(columns)})
        pq.write_table(table, path)
    return len(trials)


def export_curves(engine: sa.Engine, study_name: str, path: Path, fmt: ExportFormat = "csv") -> int:
    """Write every curve point of a study to ``path``; returns the number of points."""
    curves = read_curves(engine, study_name)
    if fmt == "csv":
        rows = 0
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CURVE_COLUMNS)
            for number, series, steps, values in _each_curve(curves):
                writer.writerows(
                    (number, series, int(s), float(v)) for s, v in zip(steps, values, strict=True)
                )
                rows += len(steps)
        return rows
    pa, pq = _pyarrow()
    pieces = list(_each_curve(curves))
    lengths = [len(steps) for _, _, steps, _ in pieces]
    series_names = sorted({series for _, series, _, _ in pieces})
    series_codes = {name: code for code, name in enumerate(series_names)}
    table = pa.table(
        {
            "trial": np.repeat(np.array([p[0] for p in pieces], dtype=np.int32), lengths),
            "series": pa.DictionaryArray.from_arrays(
                np.repeat(np.array([series_codes[p[1]] for p in pieces], dtype=np.int32), lengths),
                series_names,
            ),
            "step": np.concatenate([p[2] for p in pieces] or [np.empty(0, np.int32)]).astype(np.int64),
            "value": np.concatenate([p[3] for p in pieces] or [np.empty(0, np.float32)]),
        }
    )
    pq.write_table(table, path)
    return table.num_rows


def _each_curve(
    curves: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]],
) -> Iterator[tuple[int, str, np.ndarray, np.ndarray]]:
    for number, by_series in sorted(curves.items()):
        for series, (steps, values) in sorted(by_series.items()):
            yield number, series, steps, values


def _cell(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _column(pa: Any, values: list[object]) -> Any:
    """A typed column; a user attribute whose values mix types (rare) becomes text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GrokforecastError(
            "Parquet export needs pyarrow; install it with: pip install 'grokforecast[parquet]' "
            "(or export with --format csv)"
        ) from None
    return pa, pq
