"""``grokforecast train``: one configuration, a progress bar, a summary, optional curves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grokforecast.cli.options import train_config_from_cli, train_config_options

if TYPE_CHECKING:
    from grokforecast.training import Trainer


@click.command()
@train_config_options
@click.option(
    "--curves",
    "curves_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write settings, curves and labels to this JSON (or .json.gz) file.",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Continue from this checkpoint if it exists, and save the final state to it.",
)
def train(curves_path: Path | None, checkpoint_path: Path | None, **settings) -> None:
    """Train one configuration and print t2, t4 and the final accuracies.

    With --checkpoint a short run can be extended later: run with --steps 300, then the
    same command with --steps 3000 continues from step 300.
    """
    from grokforecast.cli.progress import TrainProgress
    from grokforecast.records import RunRecord, write_record
    from grokforecast.training import RunStatus, Trainer

    config = train_config_from_cli(settings)
    if checkpoint_path is not None and checkpoint_path.exists():
        trainer = Trainer.resume(checkpoint_path, config)
    else:
        trainer = Trainer(config)
    started = time.perf_counter()
    with TrainProgress(trainer) as progress:
        status = trainer.run(on_eval=progress.update)
    seconds = time.perf_counter() - started
    if checkpoint_path is not None:
        trainer.save(checkpoint_path)
    if curves_path is not None:
        write_record(
            curves_path, RunRecord("train", config.to_dict(), trainer.curves, trainer.diverged_at, seconds)
        )
    _print_summary(trainer, seconds)
    if status is RunStatus.DIVERGED:
        raise click.exceptions.Exit(1)


def _print_summary(trainer: Trainer, seconds: float) -> None:
    summary = trainer.summary()
    if summary["diverged_at"] is not None:
        click.echo(
            f"diverged: the training loss became NaN or infinite at step {summary['diverged_at']}; "
            "lower --lr or --init-scale"
        )
    rows = [
        ("steps", f"{summary['steps']} in {seconds:.1f} s on {trainer.device}"),
        ("t2 (memorized)", _step(summary["t2"])),
        (f"t4 (val acc >= {trainer.config.grok_threshold:g})", _step(summary["t4"])),
        ("grokked", "yes" if summary["grokked"] else "no"),
        ("final train acc", f"{summary['final_train_acc']:.3f}"),
        ("final val acc", f"{summary['final_val_acc']:.3f}"),
        ("final weight norm", f"{summary['final_weight_norm']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def _step(step: int | None) -> str:
    return "not reached" if step is None else f"step {step}"
