"""``grokforecast inspect``: look inside a trial, from the snapshots its sweep kept."""

from __future__ import annotations

from pathlib import Path

import click

from grokforecast.cli.status import open_study, storage_option, study_argument
from grokforecast.errors import GrokforecastError


@click.command("inspect")
@study_argument
@click.option("--trial", "trial_number", type=click.IntRange(min=0), required=True, help="Trial number.")
@storage_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write [default: runs/<study file>/inside/trial-N.html].",
)
def inspect_trial(study: str, trial_number: int, storage: str | None, output: Path | None) -> None:
    """Representation PCA, Fourier power, layer norms, loss profiles, top Hessian
    eigenvalue and gradient norm of trial N of STUDY (a study file, or a study name with
    --storage) at each of its snapshots, as figures.

    Views are cached beside the snapshots and computed again only when a snapshot changes.
    """
    from grokforecast.inside.trial_views import trial_views
    from grokforecast.sweep.plan import stored_plan
    from grokforecast.viz.html import figure_div, page
    from grokforecast.viz.inside_figures import inside_figures

    loaded, rdb, _ = open_study(study, storage)
    plan = stored_plan(loaded, str(rdb.engine.url))
    if plan is None:
        raise GrokforecastError(
            f"study {loaded.study_name!r} was not made by grokforecast: it has no snapshots"
        )
    trials = {t.number: t for t in loaded.get_trials(deepcopy=False)}
    if trial_number not in trials:
        raise GrokforecastError(
            f"study {plan.spec.name!r} has no trial {trial_number} (it has 0 .. {len(trials) - 1})"
        )
    views, computed = trial_views(plan, trials[trial_number])
    for view in views:
        fourier = (
            f", Fourier top-5 share {view.fourier_sparsity:.2f}" if view.fourier_sparsity is not None else ""
        )
        click.echo(
            f"step {view.step:>6}: top Hessian eigenvalue {view.top_eigenvalue:.4g}, gradient norm "
            f"{view.gradient_norm:.3g}{fourier} ({view.seconds:.2f} s)"
        )
    title = f"{plan.spec.name}, trial {trial_number}"
    figures = inside_figures(views, title)
    body = f"<h1>Inside {title}</h1>\n" + "\n".join(
        figure_div(figure, f"inside-{name}", include_plotlyjs=(i == 0))
        for i, (name, figure) in enumerate(figures.items())
    )
    path = output or plan.checkpoint_dir.parent / "inside" / f"trial-{trial_number}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(f"Inside {title}", body))
    click.echo(
        f"{len(views)} snapshots ({computed} computed now, {len(views) - computed} cached): wrote {path}"
    )
