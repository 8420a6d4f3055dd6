"""``grokforecast sweep``, ``resume`` and ``worker``: run a study file's sweep."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from grokforecast.sweep.driver import SweepPlan

EXIT_INTERRUPTED = 130

study_file = click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
storage_option = click.option(
    "--storage",
    metavar="URL",
    help="Study database URL [default: the study file's, else sqlite:///runs/NAME.db].",
)
n_trials_option = click.option(
    "--n-trials", type=click.IntRange(min=1), help="Finished trials to reach [default: the study file's]."
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine.",
)


def _plan(study_file: Path, storage: str | None, n_trials: int | None) -> SweepPlan:
    import optuna

    from grokforecast.sweep.driver import SweepPlan

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = SweepPlan.load(study_file, storage)
    if n_trials is not None:
        plan = dataclasses.replace(plan, spec=plan.spec.model_copy(update={"n_trials": n_trials}))
    return plan


def _run(plan: SweepPlan, workers: int, resume: bool) -> None:
    from grokforecast.sweep.run import SweepInterrupted, run_sweep
    from grokforecast.sweep.storage import display_url
    from grokforecast.sweep.summary import report_text

    budget = plan.spec.budget
    click.echo(
        f"study {plan.spec.name!r}: {plan.spec.n_trials} trials, probe {budget.probe_steps} of "
        f"{budget.full_steps} steps, {workers} worker(s), storage {display_url(plan.storage_url)}"
    )
    try:
        study = run_sweep(plan, workers, resume=resume)
    except SweepInterrupted:
        click.echo(
            f"interrupted; the study is kept. Continue with: grokforecast resume {plan.spec_path}", err=True
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    click.echo(report_text(study, plan.spec.budget.full_steps))


@click.command()
@study_file
@storage_option
@n_trials_option
@workers_option
def sweep(study_file: Path, storage: str | None, n_trials: int | None, workers: int) -> None:
    """Run the sweep of STUDY_FILE: probe every trial, forecast, continue the promising ones.

    Running it again on an existing study continues it to its number of trials.
    """
    _run(_plan(study_file, storage, n_trials), workers, resume=False)


@click.command()
@study_file
@storage_option
@n_trials_option
@workers_option
def resume(study_file: Path, storage: str | None, n_trials: int | None, workers: int) -> None:
    """Continue a study to its number of trials, retrying interrupted trials from their checkpoints."""
    plan = _plan(study_file, storage, n_trials)
    from grokforecast.sweep.driver import load_study

    load_study(plan)  # a clear error when there is nothing to resume
    _run(plan, workers, resume=True)


@click.command()
@study_file
@storage_option
def worker(study_file: Path, storage: str | None) -> None:
    """Join a running study (from any host that reaches its storage) until it is done."""
    from grokforecast.sweep.driver import quiet_interrupted_trials, run_worker

    quiet_interrupted_trials()
    plan = _plan(study_file, storage, None)
    click.echo(f"joining study {plan.spec.name!r}")
    try:
        run_worker(str(plan.spec_path), plan.storage_url)
    except KeyboardInterrupt:
        click.echo("interrupted; the running trial is marked failed and will be retried", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
