"""``grokforecast forecaster fit``: (re)fit the forecaster calibrations on a corpus."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def forecaster() -> None:
    """Fit the grokking forecaster."""


@forecaster.command("fit")
@click.option(
    "--corpus",
    "corpora",
    multiple=True,
    metavar="NAME_OR_DIR",
    help="Corpus to fit on (repeatable) [default: every shipped corpus].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the calibration files [default: the package's pretrained/].",
)
def fit(corpora: tuple[str, ...], out_dir: Path | None) -> None:
    """Fit one calibration per input set (full, train_loss, val_loss, val_acc; each with
    and without the hyperparameters).

    With no options this rewrites the calibrations shipped in the package, from the
    shipped corpus: the command that made them.
    """
    from grokforecast.corpus import load_corpus
    from grokforecast.forecast.fitting import PRETRAINED_DIR, fit_pretrained

    records = load_corpus(*corpora)
    written = fit_pretrained(records, out_dir or PRETRAINED_DIR)
    grokked = sum(r.grokked for r in records)
    click.echo(f"fitted on {len(records)} runs ({grokked} grokked):")
    width = max(map(len, written))
    for name, path in written.items():
        click.echo(f"  {name:<{width}} {path}")
