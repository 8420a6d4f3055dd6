"""``grokforecast corpus``: build a labelled corpus from a grid file, resumably."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of run records [default: runs/corpus/<grid name>].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    help="Parallel training processes (one thread each).",
)
def corpus(grid_file: Path, out_dir: Path | None, workers: int) -> None:
    """Run every cell of GRID_FILE to full length and write one labelled record per run.

    Finished cells are skipped, so an interrupted build continues where it stopped.
    """
    from tqdm import tqdm

    from grokforecast.corpus.build import build, plan
    from grokforecast.corpus.grid import load_grid

    grid = load_grid(grid_file)
    out_dir = out_dir or Path("runs") / "corpus" / grid.name
    todo = plan(grid, out_dir)
    click.echo(
        f"{grid.name}: {todo.done} runs already in {out_dir}, {len(todo.todo)} to go on {workers} workers"
    )
    grokked = 0
    with tqdm(total=len(todo.todo), unit="run", dynamic_ncols=True) as bar:
        for record in build(todo.todo, out_dir, workers):
            grokked += record.grokked
            bar.set_postfix(grokked=grokked, refresh=False)
            bar.update()
    click.echo(f"{len(todo.todo)} runs written to {out_dir} ({grokked} grokked)")
