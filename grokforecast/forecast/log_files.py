"""A training log written by another loop, read from its file as a forecaster history.

Four forms: a TensorBoard run (its directory or one event file: each tag's scalars at
their own steps, and the hyperparameters of its HParams record;
:mod:`~grokforecast.forecast.event_files`), and by the file's suffix, ``.csv`` (a header
row, one row per step or per evaluation: Keras's ``CSVLogger``, Lightning's
``metrics.csv``; an empty cell is a value not measured there), ``.jsonl`` (one JSON
object per line) and ``.json`` (an object of curves, ``{"val_loss": [...], ...}``, or a
list of row objects). A ``.json`` object may nest its curves by split (``{"train":
{"loss": [...]}, "val": {"loss": [...]}}``) or keep its rows or curves under one of
:data:`CURVE_CONTAINERS` (HuggingFace's ``trainer_state.json``: ``log_history``), and the
run's hyperparameters under one of :data:`HYPERPARAMETER_CONTAINERS` (nested objects read
as dotted names: ``{"config": {"optimizer": {"lr": ...}}}``). What comes back is a
:class:`~grokforecast.history.History` of the curves the forecaster reads, found under
their common spellings, with the ``step`` (or ``epoch``, fractions kept) column as their
steps and the points a row did not measure left out
(:func:`~grokforecast.forecast.features.readable_part`).

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
import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grokforecast.errors import GrokforecastError
from grokforecast.forecast.event_files import EVENT_FILE_PREFIX, event_files, is_event_file, read_events
from grokforecast.forecast.features import columns_of, curve_key, readable_part
from grokforecast.history import History, hyperparameters_from
from grokforecast.vocabulary import CURVE_GROUPS

#: The suffixes of the logs read (the module's docstring says what each holds).
LOG_SUFFIXES = (".csv", ".jsonl", ".json")
#: Keys under which a ``.json`` log object keeps its rows or curves, first found first.
CURVE_CONTAINERS = ("log_history", "history", "metrics", "curves", "logs", "log")
#: Keys under which a ``.json`` log object keeps its run's hyperparameters: the first
#: that holds a whole set of them (lr and weight decay, or the data fraction) is read; a
#: ``"hyperparameters"`` that holds none is an error, since it was meant for them.
HYPERPARAMETER_CONTAINERS = ("hyperparameters", "hparams", "config", "params", "args")
#: The most column names an error lists (a directory of many runs has hundreds of tags).
SHOWN_COLUMNS = 12


def read_log(path: str | Path, hyperparameters: Mapping[str, float] | None = None) -> History:
    """The curves of the log at ``path``, with the run's ``hyperparameters``: those given,
    else those a JSON log object holds (:data:`HYPERPARAMETER_CONTAINERS`; common spellings
    read: ``learning_rate``, ``wd``, ``train_fraction``, ...). A :class:`GrokforecastError`
    names the file and what is wrong with it where it cannot be read."""
    path = Path(path)
    try:
        content, logged_hyperparameters = _read(path)
        if not content:
            raise GrokforecastError(f"{path}: holds no rows; is the run's log written yet?")
        columns = columns_of(content)
        logged = [key for key in (curve_key(columns, name) for name in CURVE_GROUPS) if key]
        if not logged:
            names = sorted(key for key in columns if not key.endswith("_steps"))
            shown = (
                f"{names}"
                if len(names) <= SHOWN_COLUMNS
                else f"{names[:SHOWN_COLUMNS]} and {len(names) - SHOWN_COLUMNS} more"
            )
            several_runs = " (a directory of several runs? give one run's directory)" if path.is_dir() else ""
            raise GrokforecastError(
                f"{path}: holds none of the curves {list(CURVE_GROUPS)}, under their names or a common "
                f"spelling (loss, val_accuracy, eval_loss, ...); its columns are {shown}{several_runs}"
            )
        part = readable_part(columns)
        if not any(name in part for name in CURVE_GROUPS):
            raise GrokforecastError(
                f"{path}: too few measured points of {logged} to forecast from "
                "(a training loss needs 6, a validation curve 2)"
            )
        curves = {name: (part[f"{name}_steps"], part[name]) for name in CURVE_GROUPS if name in part}
        return History(curves, hyperparameters or logged_hyperparameters)
    except OSError as error:
        raise GrokforecastError(f"{path}: {error.strerror}") from None
    except (ValueError, csv.Error) as error:
        raise GrokforecastError(f"{path}: {error}") from None


def _read(path: Path) -> tuple[Any, dict[str, float] | None]:
    """The rows or columns of the log at ``path``, and the run's hyperparameters it holds
    (None where it holds none): a TensorBoard run's event files, or a log file by its
    suffix."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_dir() or is_event_file(path):
        if not event_files(path):
            raise GrokforecastError(
                f"{path}: a directory is read as a TensorBoard run, and it holds no event file "
                f"({EVENT_FILE_PREFIX}*); give a run's directory, or a log ({', '.join(LOG_SUFFIXES)})"
            )
        events = read_events(path)
        columns: dict[str, list[float]] = {}
        for tag, (steps, values) in events.scalars.items():
            columns[tag], columns[f"{tag}_steps"] = values, steps
        return columns, hyperparameters_from(events.hyperparameters)
    if path.suffix not in LOG_SUFFIXES:
        raise GrokforecastError(
            f"{path}: cannot tell a log's form from the suffix {path.suffix or '(none)'!r}; name it "
            f"{', '.join(LOG_SUFFIXES)}, or give a TensorBoard run's directory or event file"
        )
    with path.open(newline="") as file:
        content, settings = _parsed(file.read(), path.suffix)
    return content, _logged_hyperparameters(settings, path)


def _logged_hyperparameters(settings: Mapping[str, Any], path: Path) -> dict[str, float] | None:
    """The hyperparameters a ``.json`` log object holds (``settings``: its top level),
    under the forecaster's names; None where it holds none."""
    for key in HYPERPARAMETER_CONTAINERS:
        logged = settings.get(key)
        if not isinstance(logged, Mapping):
            continue
        found = hyperparameters_from(_flattened(logged))
        if found is not None:
            return found
        if key == "hyperparameters":
            raise GrokforecastError(
                f"{path}: its hyperparameters {dict(logged)!r} need lr and weight_decay, or data_fraction, "
                "or all three (or learning_rate, wd, train_fraction, ...) with lr > 0, weight_decay >= 0, "
                "0 < data_fraction <= 1"
            )
    return None


def _parsed(text: str, suffix: str) -> tuple[Any, Mapping[str, Any]]:
    """The rows or the columns a log's ``text`` holds, as the form ``suffix`` names, and
    the object around them where the log is a ``.json`` object (else empty), which may
    hold the run's hyperparameters."""
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines())), {}
    if suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()], {}
    content = json.loads(text)
    if not isinstance(content, Mapping):
        return content, {}
    curves = _flattened(content)
    if not any(curve_key(curves, name) for name in CURVE_GROUPS):
        inner = next(
            (content[key] for key in CURVE_CONTAINERS if isinstance(content.get(key), list | Mapping)), None
        )
        if inner is not None:
            curves = _flattened(inner) if isinstance(inner, Mapping) else inner
    return curves, content


def _flattened(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``tree`` with its nested objects' keys joined by ``/`` (``{"val": {"loss": x}}`` is
    ``{"val/loss": x}``), as loggers that write ``val/loss`` name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flattened(value, f"{name}/"))
        else:
            flat[name] = value
    return flat
