"""``grokforecast report``: one self-contained HTML file of a study (plotly.js inlined).

The file opens offline, in any browser, and can be mailed or attached to a paper's
supplement: every figure of :mod:`grokforecast.viz.figures`, the summary and the trials.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import optuna
import plotly.graph_objects as go
import sqlalchemy as sa

from grokforecast.viz import figures
from grokforecast.viz.html import figure_div, page, summary, trials_table
from grokforecast.viz.study_data import StudyView, display_curves, load_study_view


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


def report_html(study: optuna.Study, engine: sa.Engine) -> str:
    view = load_study_view(study)
    divs = [
        figure_div(figure, figure_id, include_plotlyjs=index == 0)
        for index, (figure_id, figure) in enumerate(study_figures(view, engine).items())
    ]
    body = (
        f"<h1>grokforecast study <code>{escape(view.name)}</code></h1>"
        f"{summary(view)}"
        + "".join(f"<section>{div}</section>" for div in divs)
        + f"<h2>Trials</h2>{trials_table(view)}"
    )
    return page(f"grokforecast: {view.name}", body)


def write_report(study: optuna.Study, engine: sa.Engine, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(study, engine), encoding="utf-8")
    return path
