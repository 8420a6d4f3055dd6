"""Run records: a finished (or stopped) run's settings, curves and labels as one file.

``grokforecast train --curves`` writes one, and the corpus is a folder of them. JSON so
that anything can read it; ``.json.gz`` is compressed. Floats are rounded to five
significant digits, far below the run-to-run noise, to keep the shipped corpus small.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokforecast.curves import Curves, GrokTimes, grok_times
from grokforecast.errors import GrokforecastError
from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD


@dataclass
class RunRecord:
    """One labelled run: its training settings, curves, and how long it took."""

    run_id: str
    config: dict[str, Any]
    curves: Curves
    diverged_at: int | None = None
    seconds: float | None = None

    @property
    def times(self) -> GrokTimes:
        return grok_times(self.curves, self.config.get("grok_threshold", DEFAULT_GROK_THRESHOLD))

    @property
    def grokked(self) -> bool:
        return self.times.grokked

    @property
    def corpus(self) -> str:
        """The corpus (grid) the run belongs to: its run id up to the hash."""
        return self.run_id.rsplit("-", 1)[0]

    @property
    def family(self) -> str:
        """The model family of the run: its workload, a model and a kind of task.

        Corpora of one family differ only in the operation, the batch size or the grid
        (``mlp_add59`` and ``mlp_mul59`` are both ``modular_mlp``), so a forecaster is
        judged on a family it never saw by holding out all of a family's corpora together.
        """
        return str(self.config["workload"])

    def to_dict(self) -> dict[str, Any]:
        times = self.times
        return {
            "run_id": self.run_id,
            "config": self.config,
            "t2": times.t2,
            "t4": times.t4,
            "grokked": times.grokked,
            "diverged_at": self.diverged_at,
            "seconds": self.seconds,
            "curves": {name: [_round(v) for v in values] for name, values in self.curves.to_dict().items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=data["run_id"],
            config=data["config"],
            curves=Curves.from_dict(data["curves"]),
            diverged_at=data.get("diverged_at"),
            seconds=data.get("seconds"),
        )


def _round(value: float) -> float:
    return float(f"{value:.5g}")


def write_record(path: str | Path, record: RunRecord) -> None:
    """Write atomically (a killed corpus worker never leaves half a record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_dict(), separators=(",", ":")).encode()
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)
    os.replace(partial, path)


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        return RunRecord.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GrokforecastError(f"cannot read run record {path}: {error}") from None
