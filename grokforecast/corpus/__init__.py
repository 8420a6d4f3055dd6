"""The labelled corpus: full-length runs with their curves and grokking labels.

The package ships a small corpus under ``grokforecast/corpus/data/<grid>/``, made by
``grokforecast corpus`` from the grids in ``grokforecast/corpus/grids/``. Reading it
needs only numpy; building it needs torch.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from grokforecast.errors import GrokforecastError
from grokforecast.records import RunRecord, read_record

SHIPPED_DATA = Path(__file__).parent / "data"
SHIPPED_GRIDS = Path(__file__).parent / "grids"
#: Grids of families measured held out and never fitted on: their runs are built by a
#: user (``grokforecast corpus``) and replayed, never shipped (``docs/benchmarks-history.md``).
HELD_OUT_GRIDS = Path(__file__).parent / "held_out"


def shipped_corpus_names() -> list[str]:
    return (
        sorted(path.name for path in SHIPPED_DATA.iterdir() if path.is_dir()) if SHIPPED_DATA.is_dir() else []
    )


@functools.cache
def shipped_families() -> tuple[str, ...]:
    """The model families of the shipped corpora (each grid's workload; see
    :attr:`~grokforecast.records.RunRecord.family`), read from the grids without the runs."""
    workloads = {
        tomllib.loads((SHIPPED_GRIDS / f"{name}.toml").read_text())["fixed"]["workload"]
        for name in shipped_corpus_names()
    }
    return tuple(sorted(workloads))


def load_corpus(*sources: str | Path) -> list[RunRecord]:
    """Records from folders of record files, or shipped corpora by name.

    With no argument, every shipped corpus. Records are sorted by run id, so the order
    is the same on every machine.
    """
    folders = [_resolve(source) for source in sources] or [SHIPPED_DATA / n for n in shipped_corpus_names()]
    records = [
        read_record(path)
        for folder in folders
        for path in folder.glob("*.json*")
        if not path.name.endswith(".partial")
    ]
    return sorted(records, key=lambda record: record.run_id)


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    if (SHIPPED_DATA / str(source)).is_dir():
        return SHIPPED_DATA / str(source)
    raise GrokforecastError(
        f"no corpus at {source!r}; give a folder of run records or one of {shipped_corpus_names()}"
    )
