"""Run a grid's cells in parallel processes and write one record per finished run.

Resumable by construction: a cell whose record file exists is skipped, and records are
written atomically at the end of a run, so a killed build loses at most the runs that
were in flight.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from grokforecast.corpus.grid import Cell, Grid
from grokforecast.records import RunRecord, write_record

RECORD_SUFFIX = ".json.gz"


@dataclass(frozen=True)
class BuildPlan:
    todo: list[Cell]
    done: int


def plan(grid: Grid, out_dir: Path) -> BuildPlan:
    cells = grid.cells()
    todo = [cell for cell in cells if not record_path(out_dir, cell).exists()]
    return BuildPlan(todo=todo, done=len(cells) - len(todo))


def record_path(out_dir: Path, cell: Cell) -> Path:
    return out_dir / f"{cell.run_id}{RECORD_SUFFIX}"


def run_cell(cell: Cell, out_dir: Path) -> RunRecord:
    """Train one cell to its full budget and write its record."""
    import torch

    from grokforecast.training import Trainer

    torch.set_num_threads(1)  # one process per core beats threads for these small models
    started = time.perf_counter()
    trainer = Trainer(cell.config)
    trainer.run()
    record = RunRecord(
        cell.run_id,
        cell.config.to_dict(),
        trainer.curves,
        trainer.diverged_at,
        round(time.perf_counter() - started, 2),
    )
    write_record(record_path(out_dir, cell), record)
    return record


def build(cells: list[Cell], out_dir: Path, workers: int) -> Iterator[RunRecord]:
    """Run ``cells`` on ``workers`` processes, yielding each record as it lands."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for cell in cells:
            yield run_cell(cell, out_dir)
        return
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(run_cell, cell, out_dir) for cell in cells]
        for future in as_completed(futures):
            yield future.result()
