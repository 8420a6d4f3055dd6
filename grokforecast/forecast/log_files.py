"""A training log written by another loop, read from its file as a forecaster history.

Three forms, by the file's suffix: ``.csv`` (a header row, one row per step or per
evaluation: Keras's ``CSVLogger``, Lightning's ``metrics.csv``; an empty cell is a value
not measured there), ``.jsonl`` (one JSON object per line) and ``.json`` (an object of
curves, ``{"val_loss": [...], ...}``, or a list of row objects: HuggingFace's
``trainer_state.json`` holds its rows under ``log_history``). What comes back is a
:class:`~grokforecast.history.History` of the curves the forecaster reads, found under
their common spellings, with the ``step`` (or ``epoch``) column as their steps and the
points a row did not measure left out (:func:`~grokforecast.forecast.features.readable_part`).

Example:

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> rows = [{"step": step, "val_loss": 2.0 - step / 100} for step in (0, 50, 100)]
    >>> _ = path.write_text("\\n".join(json.dumps(row) for row in rows))
    >>> history = read_log(path)
    >>> history["val_loss"].tolist(), history["val_loss_steps"].tolist()
    ([2.0, 1.5, 1.0], [0, 50, 100])
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grokforecast.errors import GrokforecastError
from grokforecast.forecast.features import columns_of, curve_key, readable_part
from grokforecast.history import History, hyperparameters_from
from grokforecast.vocabulary import CURVE_GROUPS

#: The suffixes of the logs read (the module's docstring says what each holds).
LOG_SUFFIXES = (".csv", ".jsonl", ".json")


def read_log(path: str | Path, hyperparameters: Mapping[str, float] | None = None) -> History:
    """The curves of the log at ``path``, with the run's ``hyperparameters``: those given,
    else those a JSON log of curves holds under ``"hyperparameters"`` (common spellings
    read: ``learning_rate``, ``wd``, ``train_fraction``, ...). A :class:`GrokforecastError`
    names the file and what is wrong with it where it cannot be read."""
    path = Path(path)
    if path.suffix not in LOG_SUFFIXES:
        raise GrokforecastError(
            f"{path}: cannot tell a log's form from the suffix {path.suffix or '(none)'!r}; "
            f"name it {', '.join(LOG_SUFFIXES)}"
        )
    try:
        with path.open(newline="") as file:
            content = _parsed(file.read(), path.suffix)
        if not content:
            raise GrokforecastError(f"{path}: holds no rows; is the run's log written yet?")
        columns = columns_of(content)
        logged = [key for key in (curve_key(columns, name) for name in CURVE_GROUPS) if key]
        if not logged:
            raise GrokforecastError(
                f"{path}: holds none of the curves {list(CURVE_GROUPS)}, under their names or a common "
                f"spelling (loss, val_accuracy, eval_loss, ...); its columns are {sorted(columns)}"
            )
        part = readable_part(columns)
        if not any(name in part for name in CURVE_GROUPS):
            raise GrokforecastError(
                f"{path}: too few measured points of {logged} to forecast from "
                "(a training loss needs 6, a validation curve 2)"
            )
        curves = {name: (part[f"{name}_steps"], part[name]) for name in CURVE_GROUPS if name in part}
        return History(curves, hyperparameters or _logged_hyperparameters(part, path))
    except OSError as error:
        raise GrokforecastError(f"{path}: {error.strerror}") from None
    except (ValueError, csv.Error) as error:
        raise GrokforecastError(f"{path}: {error}") from None


def _logged_hyperparameters(part: Mapping[str, Any], path: Path) -> dict[str, float] | None:
    """The hyperparameters a log holds, under the forecaster's names; None where it holds
    none."""
    logged = part.get("hyperparameters")
    if logged is None:
        return None
    found = hyperparameters_from(logged) if isinstance(logged, Mapping) else None
    if found is None:
        raise GrokforecastError(
            f"{path}: its hyperparameters {logged!r} need lr, weight_decay and data_fraction (or "
            "learning_rate, wd, train_fraction, ...) with lr > 0, weight_decay >= 0, 0 < data_fraction <= 1"
        )
    return found


def _parsed(text: str, suffix: str) -> Any:
    """The rows or the columns a log's ``text`` holds, as the form ``suffix`` names."""
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    content = json.loads(text)
    if isinstance(content, Mapping) and isinstance(content.get("log_history"), list):
        return content["log_history"]  # HuggingFace's trainer_state.json
    return content
