from pathlib import Path

import pytest

from grokforecast.curves import Curves
from grokforecast.errors import GrokforecastError
from grokforecast.records import RunRecord, read_record, write_record


def _record() -> RunRecord:
    curves = Curves(
        train_loss=[2.0, 1.2345678],
        train_acc=[0.5, 1.0],
        eval_steps=[0, 2],
        val_loss=[2.0, 0.1],
        val_acc=[0.1, 0.97],
        weight_norm=[10.0, 9.5],
    )
    return RunRecord("run-1", {"lr": 1e-3, "grok_threshold": 0.95}, curves, seconds=1.5)


@pytest.mark.parametrize("name", ["r.json", "r.json.gz"])
def test_records_round_trip_with_their_labels(tmp_path: Path, name: str) -> None:
    write_record(tmp_path / name, _record())
    back = read_record(tmp_path / name)
    assert back.run_id == "run-1" and back.config["lr"] == 1e-3
    assert back.curves.train_loss == [2.0, 1.2346]  # five significant digits
    assert (back.times.t2, back.times.t4, back.grokked) == (1, 2, True)
    assert not list(tmp_path.glob("*.partial"))


def test_a_broken_record_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GrokforecastError, match=r"cannot read run record .*bad\.json"):
        read_record(tmp_path / "bad.json")
