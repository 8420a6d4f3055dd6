"""``grokforecast forecaster``: (re)fit the shipped calibrations on a corpus (``fit``), and
forecast runs another training loop logged to files (``predict``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def forecaster() -> None:
    """Fit the grokking forecaster, or forecast logged runs with it."""


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


@forecaster.command("predict")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--until",
    type=click.FloatRange(min=0),
    help="Read each log up to and at this step (the probe), in the log's step column's unit.",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="The run's learning rate.")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="The run's weight decay.")
@click.option(
    "--data-fraction", type=click.FloatRange(0, 1, min_open=True), help="The run's training-data fraction."
)
def predict(
    logs: tuple[Path, ...],
    until: float | None,
    lr: float | None,
    weight_decay: float | None,
    data_fraction: float | None,
) -> None:
    """Forecast whether the runs logged in LOGS will grok: P(grok) of each, from the
    shipped calibration for the curves it logged.

    A log is a .csv (Keras's CSVLogger, Lightning's metrics.csv), a .jsonl, a .json
    (curves, rows, or HuggingFace's trainer_state.json), or a TensorBoard run (its
    directory or an events.out.tfevents file), with the curves under their common names
    (loss, val_loss, val_accuracy, eval_loss, Loss/train, ...) and a step or epoch column.
    Give --lr and --weight-decay, --data-fraction, or all three (the runs' shared values)
    to forecast with them, the strongest signal on a model family never recorded; a .json
    log may hold its run's own (under "hyperparameters", "config", ...), and a
    TensorBoard run those of its HParams record (add_hparams).
    """
    from grokforecast.errors import GrokforecastError
    from grokforecast.forecast import GrokForecaster
    from grokforecast.forecast.forecaster import inputs_key
    from grokforecast.forecast.log_files import read_log
    from grokforecast.history import complete_sets

    given = {
        name: value
        for name, value in {"lr": lr, "weight_decay": weight_decay, "data_fraction": data_fraction}.items()
        if value is not None
    }
    if complete_sets(given) != set(given):
        raise GrokforecastError(
            "give --lr and --weight-decay together (with or without --data-fraction); "
            f"got only {['--' + name.replace('_', '-') for name in given if name != 'data_fraction']}"
        )
    hyperparameters = given or None
    for path in logs:
        history = read_log(path, hyperparameters)
        history = history if until is None else history.until(until)
        try:
            forecaster = GrokForecaster.pretrained_for(history)
            assessment = forecaster.assess(history)
        except ValueError as error:
            raise GrokforecastError(f"{path}: {error}") from None
        moved = ", ".join(f"{name} {weight:+.2f}" for name, weight in assessment.main_features.items())
        note = f"; {assessment.at_mean_note}" if assessment.at_mean else ""
        click.echo(
            f"{path}: P(grok) {assessment.probability:.2f} at step {history.newest_step} "
            f"(read as {inputs_key(forecaster.groups)}; moved by {moved}{note})"
        )
