"""``grokforecast report``: one self-contained HTML file of a study (plotly.js inlined).

The file opens offline, in any browser, and can be mailed or attached to a paper's
supplement: every figure of :mod:`grokforecast.viz.figures`, the summary, the views
inside a grokking and a non-grokking trial (:mod:`grokforecast.inside`), and the trials.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import optuna
import plotly.graph_objects as go
import sqlalchemy as sa

from grokforecast.inside.snapshot_views import SnapshotViews
from grokforecast.viz import figures
from grokforecast.viz.html import figure_div, page, summary, trials_table
from grokforecast.viz.inside_figures import inside_figures
from grokforecast.viz.study_data import StudyView, display_curves, load_study_view

#: The views of the trials to look inside, by caption: ``{caption: (trial number, views)}``.
InsideViews = dict[str, tuple[int, list[SnapshotViews]]]


def study_figures(view: StudyView, engine: sa.Engine) -> dict[str, go.Figure]:
    """Every figure of a study, by a stable id (the report, the dashboard, optuna-dashboard)."""
    chosen = figures.chosen_trials(view)
    curve_data = display_curves(engine, view.name, [t.number for t in chosen.values()])
    return {
        "heatmaps": figures.heatmaps(view),
        "curves": figures.curves(chosen, curve_data),
        "timeline": figures.timeline(view),
        "grok-time": figures.grok_time(view),
        "calibration": figures.calibration(view),
    }


def report_html(study: optuna.Study, engine: sa.Engine, inside: InsideViews | None = None) -> str:
    """The report page; ``inside``: the views of the trials to look inside
    (:func:`~grokforecast.inside.trial_views.views_to_show`), shown after the figures."""
    view = load_study_view(study)
    divs = [
        figure_div(figure, figure_id, include_plotlyjs=index == 0)
        for index, (figure_id, figure) in enumerate(study_figures(view, engine).items())
    ]
    body = (
        f"<h1>grokforecast study <code>{escape(view.name)}</code></h1>"
        f"{summary(view)}"
        + "".join(f"<section>{div}</section>" for div in divs)
        + (inside_section(inside, view.name) if inside else "")
        + f"<h2>Trials</h2>{trials_table(view)}"
    )
    return page(f"grokforecast: {view.name}", body)


def inside_section(inside: InsideViews, study_name: str) -> str:
    """Inside the highlighted trials: every view over their snapshots."""
    parts = ["<h2>Inside the trials</h2>"]
    for caption, (number, views) in inside.items():
        parts.append(f"<h3>Trial {number}: {escape(caption)}</h3>")
        figures = inside_figures(views, f"trial {number}")
        parts += [
            f"<section>{figure_div(f, f'inside-{number}-{name}')}</section>" for name, f in figures.items()
        ]
    return "".join(parts)


def write_report(
    study: optuna.Study, engine: sa.Engine, path: Path, inside: InsideViews | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(study, engine, inside), encoding="utf-8")
    return path
