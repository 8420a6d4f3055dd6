"""``grokforecast sweep``, ``resume`` and ``worker``: run a study file's sweep."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from grokforecast.sweep.plan import SweepPlan

study_file = click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
storage_option = click.option(
    "--storage",
    metavar="URL",
    envvar="GROKFORECAST_STORAGE",
    help="Study database URL [default: GROKFORECAST_STORAGE, else the study file's, else sqlite:///runs/NAME.db].",
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


class _PopulationSize(click.ParamType):
    name = "K|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if value == "auto" or (isinstance(value, int) and value >= 1):
            return value
        if isinstance(value, str) and value.isdigit() and int(value) >= 1:
            return int(value)
        self.fail(f"{value!r} is neither a number of trials (1 or more) nor 'auto'", param, ctx)


population_option = click.option(
    "--population",
    type=_PopulationSize(),
    help="Trials each worker trains at once as one stacked model, or 'auto' to measure the "
    "fastest [default: the study file's [budget] population, else 1].",
)

backend_option = click.option(
    "--backend",
    type=click.Choice(["optuna", "ray"]),
    default="optuna",
    show_default=True,
    help="Who runs the trials: Optuna workers, or Ray Tune (resources from the study file's [ray]).",
)
ray_address_option = click.option(
    "--ray-address",
    metavar="ADDRESS",
    envvar="RAY_ADDRESS",
    help="Ray cluster to join, e.g. 10.0.0.5:6380 [default: RAY_ADDRESS, else a local runtime].",
)


def _plan(
    study_file: Path, storage: str | None, n_trials: int | None, population: int | str | None = None
) -> SweepPlan:
    import optuna

    from grokforecast.sweep.plan import SweepPlan
    from grokforecast.sweep.storage import misread_absolute_path

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = SweepPlan.load(study_file, storage)
    if warning := misread_absolute_path(plan.storage_url):
        click.echo(f"warning: {warning}", err=True)
    if n_trials is not None:
        plan = dataclasses.replace(plan, spec=plan.spec.model_copy(update={"n_trials": n_trials}))
    if population is not None:
        plan = _with_population(plan, population)
    return plan


def _with_population(plan: SweepPlan, population: int | str) -> SweepPlan:
    budget = plan.spec.budget.model_copy(update={"population": population})
    return dataclasses.replace(plan, spec=plan.spec.model_copy(update={"budget": budget}))


def _measured_population(plan: SweepPlan, backend: str) -> SweepPlan:
    """The plan with ``population = "auto"`` measured once here, for every worker (on Ray,
    each population measures it on the device it is placed on)."""
    if plan.spec.budget.population != "auto" or backend == "ray":
        return plan
    from grokforecast.sweep.populations import choose_population

    population, why = choose_population(plan.spec)
    click.echo(why)
    return _with_population(plan, population)


def _run(plan: SweepPlan, workers: int, resume: bool, backend: str, ray_address: str | None) -> None:
    from grokforecast.launch import SweepInterrupted, run_sweep
    from grokforecast.sweep.shutdown import exit_status
    from grokforecast.sweep.storage import absolute_url, display_url
    from grokforecast.sweep.study import load_study
    from grokforecast.sweep.summary import report_text, summarize

    plan = _measured_population(plan, backend)
    budget = plan.spec.budget
    if backend == "ray" and workers != 1:
        raise click.UsageError("--workers is for the optuna backend; on Ray, set [ray] cpus_per_trial")
    runner = f"{workers} worker(s)" if backend == "optuna" else "Ray Tune"
    if budget.population == "auto":
        runner += ", populations sized on each Tune trial's device"
    elif budget.population > 1:
        runner += f", {budget.population} trials at once each"
    click.echo(
        f"study {plan.spec.name!r}: {plan.spec.n_trials} trials, probe {budget.probe_steps} of "
        f"{budget.full_steps} steps, {runner}, storage {display_url(absolute_url(plan.storage_url))}"
    )
    try:
        study = run_sweep(plan, workers, resume=resume, backend=backend, ray_address=ray_address)
    except SweepInterrupted as stopped:
        study = load_study(plan)
        summary = summarize(study, budget.full_steps)
        click.echo(
            f"stopped by {stopped}: {summary.finished} of {plan.spec.n_trials} trials finished, the "
            f"running ones checkpointed; the study is kept. Continue with: grokforecast resume "
            f"{plan.spec_path}",
            err=True,
        )
        raise SystemExit(exit_status(stopped.signum)) from None
    click.echo(report_text(study, plan.spec.budget.full_steps))


@click.command()
@study_file
@storage_option
@n_trials_option
@workers_option
@population_option
@backend_option
@ray_address_option
def sweep(
    study_file: Path,
    storage: str | None,
    n_trials: int | None,
    workers: int,
    population: int | None,
    backend: str,
    ray_address: str | None,
) -> None:
    """Run the sweep of STUDY_FILE: probe every trial, forecast, continue the promising ones.

    Running it again on an existing study continues it to its number of trials.
    """
    _run(_plan(study_file, storage, n_trials, population), workers, False, backend, ray_address)


@click.command()
@study_file
@storage_option
@n_trials_option
@workers_option
@population_option
@backend_option
@ray_address_option
def resume(
    study_file: Path,
    storage: str | None,
    n_trials: int | None,
    workers: int,
    population: int | None,
    backend: str,
    ray_address: str | None,
) -> None:
    """Continue a study to its number of trials, retrying interrupted trials from their checkpoints.

    With --backend ray, the sweep's newest Ray Tune experiment is restored first.
    """
    plan = _plan(study_file, storage, n_trials, population)
    from grokforecast.sweep.study import load_study

    load_study(plan)  # a clear error when there is nothing to resume
    _run(plan, workers, True, backend, ray_address)


@click.command()
@study_file
@storage_option
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to keep trying a study database that does not answer yet (a cluster's "
    "workers start with its server).",
)
def worker(study_file: Path, storage: str | None, wait_seconds: float) -> None:
    """Join the study of STUDY_FILE (creating it if it is new) from any host that reaches
    its storage, and run trials until it is done."""
    from grokforecast.backends.optuna.workers import quiet_interrupted_trials, run_worker
    from grokforecast.sweep.shutdown import StopRequested, exit_status
    from grokforecast.sweep.storage import display_url
    from grokforecast.sweep.study import create_study

    quiet_interrupted_trials()
    plan = _plan(study_file, storage, None)
    if wait_seconds:
        click.echo(f"opening {display_url(plan.storage_url)} (waiting up to {wait_seconds:g} s)")
    storage_of_study = plan.open_storage(wait_seconds)
    create_study(plan, storage_of_study)
    plan = _measured_population(plan, "optuna")
    click.echo(f"joining study {plan.spec.name!r}")
    try:
        run_worker(plan, storage=storage_of_study)
    except KeyboardInterrupt as stopped:
        signum = stopped.signum if isinstance(stopped, StopRequested) else None
        click.echo(
            "stopped; the running trial is checkpointed, marked failed, and retried by the next resume",
            err=True,
        )
        raise SystemExit(exit_status(signum)) from None
