"""HTML pieces shared by the report file and the dashboard: page frame, summary, tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

import plotly.graph_objects as go
import plotly.io as pio

from grokforecast.viz.study_data import OUTCOME_COLORS, StudyView, TrialView

STYLE = """
body { font-family: system-ui, -apple-system, sans-serif; margin: 1.5rem auto; max-width: 1280px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f4f4f4; } td.text { text-align: left; }
.outcome { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%; margin-right: 0.3rem; }
.summary { font-size: 1rem; background: #f7f7f7; padding: 0.6rem 1rem; border-radius: 4px; }
a { color: #1f5fa8; } .muted { color: #777; }
"""


def page(title: str, body: str, head: str = "") -> str:
    """A whole HTML page (the empty icon spares the browser a request for /favicon.ico)."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style>{head}</head>\n<body>\n{body}\n</body></html>\n"
    )


def figure_div(figure: go.Figure, div_id: str, include_plotlyjs: bool | str = False) -> str:
    """A figure as a ``<div>`` (plotly.js inlined only when asked: once per report)."""
    return pio.to_html(
        figure, include_plotlyjs=include_plotlyjs, full_html=False, div_id=div_id, config={"responsive": True}
    )


def summary(view: StudyView) -> str:
    finished = view.finished()
    counts: dict[str, int] = {}
    for t in view.trials:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    outcomes = ", ".join(f"{outcome_dot(name)}{n} {escape(name)}" for name, n in counts.items())
    spent, unpruned = view.steps_spent(), view.steps_unpruned()
    compute = (
        f"compute: {spent:,} steps of {unpruned:,} for an unpruned sweep ({1 - spent / unpruned:.0%} saved)"
        if unpruned
        else ""
    )
    return (
        f"<p class='summary'>{len(view.trials)} trials ({len(finished)} finished): {outcomes}<br>"
        f"{compute}<br>{study_model_line(view)}</p>"
    )


def study_model_line(view: StudyView) -> str:
    """What the study model has learned, as of the newest decision it made."""
    newest = view.study_model()
    if newest is None:
        forecasters = sorted({t.forecaster for t in view.trials if t.forecaster})
        deciding = " and ".join(forecasters) or "shipped"
        return escape(
            "study model: not learned yet (it needs finished forecast trials of both outcomes); "
            f"the {deciding} forecaster decides"
        )
    state = newest.study_model
    return escape(
        f"study model: learned from {int(state.get('trials', 0))} finished trials of the "
        f"{newest.forecaster or 'shipped'} forecaster, scale {state.get('scale', 1.0):.2f}, shift "
        f"{state.get('shift', 0.0):+.2f}, largest feature correction "
        f"{state.get('largest_correction', 0.0):.2f} (as it decided trial {newest.number})"
    )


def outcome_dot(outcome: str) -> str:
    return f"<span class='outcome' style='background:{OUTCOME_COLORS.get(outcome, '#999')}'></span>"


def trials_table(view: StudyView, trial_link: str | None = None) -> str:
    """One row per trial; ``trial_link`` (e.g. ``"/study/x/trial/{number}"``) links each row."""
    params = sorted({name for t in view.trials for name in t.params})
    header = ["#", *params, "outcome", "P(grok)", "decision", "t4", "final val acc", "steps"]
    rows = []
    for t in sorted(view.trials, key=lambda t: t.number):
        number = str(t.number)
        if trial_link:
            number = f"<a href='{escape(trial_link.format(number=t.number))}'>{t.number}</a>"
        rows.append(
            [
                number,
                *(_number(t.params.get(name)) for name in params),
                f"{outcome_dot(t.outcome)}{escape(t.outcome)}",
                _number(t.probability, ".2f"),
                escape(t.decision or "-"),
                _number(t.t4),
                _number(t.final_val_acc, ".3f"),
                f"{t.steps_trained:,}",
            ]
        )
    return table(header, rows, text_columns={len(params) + 1, len(params) + 3})


def table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: set[int] = frozenset()) -> str:
    """An HTML table of already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='text'>{c}</td>" if i in text_columns else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: object, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return format(value, spec) if isinstance(value, float) else str(value)
    return escape(str(value))


def trial_facts(trial: TrialView) -> str:
    """A trial's parameters, outcome and decision, as definition rows."""
    facts = [
        ("outcome", f"{outcome_dot(trial.outcome)}{escape(trial.outcome)} ({trial.state.name})"),
        *((name, _number(value, ".4g")) for name, value in sorted(trial.params.items())),
        ("steps trained", f"{trial.steps_trained:,}"),
        ("t2 (train acc 100 %)", _number(trial.t2)),
        ("t4 (grok step)", _number(trial.t4)),
        ("final val acc", _number(trial.final_val_acc, ".4f")),
        ("decision", escape(trial.reason or "no decision recorded")),
    ]
    return table(["", ""], ([f"<b>{escape(k)}</b>", v] for k, v in facts), text_columns={0, 1})
