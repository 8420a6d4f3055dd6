"""Fitting forecasters on corpus records: the command behind the shipped calibrations.

A forecaster is applied at whatever probe step a study chooses, so it is fitted on each
run's history at several probe lengths at once (by default 2.5 %, 5 % and 10 % of the
run), which makes it indifferent to the exact probe length within that range.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from grokforecast.forecast.forecaster import PRETRAINED_INPUTS, GrokForecaster
from grokforecast.history import History
from grokforecast.records import RunRecord

DEFAULT_PROBE_FRACTIONS = (0.025, 0.05, 0.1)
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def probe_history(record: RunRecord, fraction: float) -> History:
    """The record's history up to ``fraction`` of its full budget, with its hyperparameters."""
    return History.from_record(record, until=max(1, round(fraction * record.config["steps"])))


def usable_records(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Records a forecaster can learn from: not diverged (a pruner prunes those on NaN)."""
    return [r for r in records if r.diverged_at is None]


def fit_on_records(
    forecaster: GrokForecaster,
    records: Sequence[RunRecord],
    fractions: Sequence[float] = DEFAULT_PROBE_FRACTIONS,
) -> GrokForecaster:
    """Fit on every usable record at each probe fraction."""
    usable = usable_records(records)
    histories = [probe_history(r, f) for f in fractions for r in usable]
    labels = [r.grokked for f in fractions for r in usable]
    return forecaster.fit(histories, labels)


def fit_pretrained(
    records: Sequence[RunRecord],
    out_dir: Path = PRETRAINED_DIR,
    fractions: Sequence[float] = DEFAULT_PROBE_FRACTIONS,
) -> dict[str, Path]:
    """Fit and write one calibration per input set of :data:`PRETRAINED_INPUTS`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, groups in PRETRAINED_INPUTS.items():
        forecaster = fit_on_records(GrokForecaster(groups), records, fractions)
        forecaster.save(out_dir / f"{name}.json")
        written[name] = out_dir / f"{name}.json"
    return written
