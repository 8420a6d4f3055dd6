"""``grokforecast status``, ``studies`` and ``export``: read a study database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from grokforecast.errors import GrokforecastError

if TYPE_CHECKING:
    import optuna

study_argument = click.argument("study")
storage_option = click.option(
    "--storage",
    metavar="URL",
    envvar="GROKFORECAST_STORAGE",
    help="Study database URL [default: GROKFORECAST_STORAGE, else the study file's, if STUDY is one].",
)


def open_study(
    study: str, storage: str | None, read_only: bool = True
) -> tuple[optuna.Study, optuna.storages.RDBStorage, int]:
    """STUDY is a study file, or a study name with --storage; returns (study, storage, full_steps)."""
    import optuna

    from grokforecast.sweep.plan import SweepPlan, stored_spec
    from grokforecast.sweep.storage import display_url, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if Path(study).is_file():
        plan = SweepPlan.load(study, storage)
        name, url = plan.spec.name, plan.storage_url
    elif storage is None:
        raise GrokforecastError(
            f"{study!r} is not a study file; give a study file, or a study name and --storage"
        )
    else:
        name, url = study, storage
    rdb = open_storage(url, read_only=read_only)
    try:
        loaded = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        raise GrokforecastError(
            f"no study {name!r} in {display_url(url)}; `grokforecast studies --storage URL` lists them"
        ) from None
    spec = stored_spec(loaded)
    full_steps = spec.budget.full_steps if spec is not None else 0
    return loaded, rdb, full_steps


@click.command()
@study_argument
@storage_option
def status(study: str, storage: str | None) -> None:
    """Trials by state, grokked and pruned, compute spent against an unpruned sweep."""
    from grokforecast.sweep.summary import report_text

    loaded, _, full_steps = open_study(study, storage)
    click.echo(report_text(loaded, full_steps))


@click.command()
@click.option("--storage", metavar="URL", required=True, help="Study database URL.")
def studies(storage: str) -> None:
    """List the studies in a study database."""
    import optuna

    from grokforecast.sweep.storage import open_storage

    rdb = open_storage(storage, read_only=True)  # a mistyped path names itself, creates nothing
    summaries = optuna.get_all_study_summaries(rdb, include_best_trial=False)
    if not summaries:
        click.echo("no studies")
    for summary in summaries:
        direction = summary.direction.name.lower()
        started = f"{summary.datetime_start:%Y-%m-%d %H:%M:%S}" if summary.datetime_start else "-"
        click.echo(f"{summary.study_name}  {summary.n_trials} trials  {direction}  started {started}")


@click.command()
@study_argument
@storage_option
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for <study>-trials.<format> and <study>-curves.<format>.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="CSV for any tool; Parquet keeps column types and is smaller (needs pyarrow).",
)
def export(study: str, storage: str | None, out_dir: Path, fmt: str) -> None:
    """Write a study's trials and dense curves to CSV or Parquet."""
    from grokforecast.sweep.export import export_curves, export_trials, file_stem

    loaded, rdb, _ = open_study(study, storage)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(loaded.study_name)
    trials_path = out_dir / f"{stem}-trials.{fmt}"
    curves_path = out_dir / f"{stem}-curves.{fmt}"
    n_trials = export_trials(loaded, trials_path, fmt)
    n_points = export_curves(rdb.engine, loaded.study_name, curves_path, fmt)
    click.echo(f"{n_trials} trials -> {trials_path}\n{n_points} curve points -> {curves_path}")
