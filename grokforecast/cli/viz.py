"""``grokforecast report`` and ``grokforecast dashboard``: look at a study."""

from __future__ import annotations

from pathlib import Path

import click

from grokforecast.cli.status import open_study, storage_option, study_argument


@click.command()
@study_argument
@storage_option
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write [default: <study>-report.html].",
)
@click.option(
    "--to-optuna-dashboard",
    is_flag=True,
    help="Also save the figures into the study, and a note on each pruned trial, for optuna-dashboard.",
)
def report(study: str, storage: str | None, out_path: Path | None, to_optuna_dashboard: bool) -> None:
    """Write a self-contained HTML report of a study (opens offline)."""
    from grokforecast.inside.trial_views import views_to_show
    from grokforecast.sweep.export import file_stem
    from grokforecast.sweep.plan import stored_plan
    from grokforecast.viz.report import study_figures, write_report
    from grokforecast.viz.study_data import load_study_view

    loaded, rdb, _ = open_study(study, storage, read_only=not to_optuna_dashboard)
    plan = stored_plan(loaded, str(rdb.engine.url))
    inside = views_to_show(plan, loaded) if plan is not None else None
    path = write_report(
        loaded, rdb.engine, out_path or Path(f"{file_stem(loaded.study_name)}-report.html"), inside
    )
    click.echo(f"report -> {path}")
    if to_optuna_dashboard:
        from grokforecast.viz.optuna_dashboard_export import save_to_optuna_dashboard

        view = load_study_view(loaded)
        n_figures, n_notes = save_to_optuna_dashboard(loaded, view, study_figures(view, rdb.engine))
        click.echo(f"optuna-dashboard: {n_figures} figures and {n_notes} pruning notes saved in the study")


@click.command()
@click.option(
    "--storage", metavar="URL", envvar="GROKFORECAST_STORAGE", required=True, help="Study database URL."
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (others can reach it)."
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--refresh",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Seconds between a study page's checks for new results.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A host name the dashboard answers besides loopback ones, e.g. the machine's name "
    "when bound to another interface (repeatable). Other Host headers get 400.",
)
def dashboard(storage: str, host: str, port: int, refresh: float, allowed_hosts: tuple[str, ...]) -> None:
    """Serve a read-only web dashboard of the studies in a database."""
    import uvicorn

    from grokforecast.sweep.storage import display_url
    from grokforecast.viz.dashboard import create_app
    from grokforecast.viz.web_security import LOOPBACK_HOSTS

    bound = () if host in LOOPBACK_HOSTS or host in ("0.0.0.0", "::") else (host,)
    app = create_app(storage, refresh_seconds=refresh, allowed_hosts=(*bound, *allowed_hosts))
    if host not in LOOPBACK_HOSTS:
        click.echo(
            f"warning: binding {host}: anyone who can reach port {port} can read every study in "
            "this database (the dashboard has no login)",
            err=True,
        )
    click.echo(f"dashboard of {display_url(storage)} on http://{host}:{port}/ (read-only; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
