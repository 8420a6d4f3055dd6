"""The figures a grokking sweep needs, as plotly figures built from a :class:`StudyView`.

One function a figure, each usable alone (notebooks, optuna-dashboard) and all shared
by the HTML report and the web dashboard:

- :func:`heatmaps`: learning rate x weight decay per data-fraction band, final validation
  accuracy beside the forecast probability and the early spectral activity (Notsawo et
  al.'s Figure 2 view), pruned trials marked;
- :func:`curves`: training and validation curves on log axes with the probe step, the
  decision and the grok step marked, and the weight norm;
- :func:`timeline`: probe and continuation segments per trial, coloured by outcome, and
  the compute spent against an unpruned sweep;
- :func:`grok_time`: grokking step against data fraction with the fitted power law;
- :func:`calibration`: forecast probability against the observed grokking rate.
"""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokforecast.forecast.grok_time import fit_grok_time
from grokforecast.viz.study_data import OUTCOME_COLORS, StudyView, TrialView

LR, WEIGHT_DECAY, DATA_FRACTION = "lr", "weight_decay", "data_fraction"
#: Cells per axis of a heat map at most; a grid sweep with fewer values gets one per value.
HEATMAP_CELLS = 10
#: Data-fraction bands of the heat maps at most (one per value for a grid).
FRACTION_BANDS = 3
TEMPLATE = "plotly_white"


def empty(title: str, message: str) -> go.Figure:
    """A figure that says why it has nothing to show (instead of an empty frame)."""
    figure = go.Figure(layout={"title": title, "template": TEMPLATE, "height": 260})
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


# -- heat maps --------------------------------------------------------------------------


def heatmaps(view: StudyView, band: int | None = None) -> go.Figure:
    """Final validation accuracy, P(grok) and early activity over lr x weight decay, one
    row per data-fraction band (only row ``band``, counted from 0, when given: figures
    shown in a fixed-height frame, as optuna-dashboard's, take one band each)."""
    title = "Learning rate x weight decay, by data fraction"
    trials = _heatmap_trials(view)
    if not trials:
        return empty(title, "no finished trial with both lr and weight_decay in its parameters yet")
    bands = _fraction_bands(trials)
    if band is not None:
        title = f"Learning rate x weight decay, {bands[band][0]}"
        bands = bands[band : band + 1]
    panels = (
        ("final val acc", lambda t: t.final_val_acc, "Viridis", (0.0, 1.0)),
        ("P(grok) as decided", lambda t: t.probability, "RdYlGn", (0.0, 1.0)),
        ("log10 activity (as decided)", lambda t: t.activity, "Magma", _limits([t.activity for t in trials])),
    )
    figure = make_subplots(
        rows=len(bands),
        cols=len(panels),
        subplot_titles=[name for name, *_ in panels],  # over the first row; bands name the rows
        horizontal_spacing=0.1,
        vertical_spacing=0.12 if len(bands) > 1 else 0.1,
    )
    lrs = [t.params[LR] for t in trials]
    wds = [t.params[WEIGHT_DECAY] for t in trials]
    lr_edges, wd_edges = _log_edges(lrs), _log_edges(wds)
    for row, (label, members) in enumerate(bands, start=1):
        for col, (name, value_of, scale, limits) in enumerate(panels, start=1):
            grid = _binned_mean(members, value_of, lr_edges, wd_edges)
            domain = figure.get_subplot(row, col)
            colorbar = {
                "len": 0.9 / len(bands),
                "y": sum(domain.yaxis.domain) / 2,
                "x": domain.xaxis.domain[1] + 0.005,
            }
            figure.add_trace(
                go.Heatmap(
                    x=_centres(lr_edges),
                    y=_centres(wd_edges),
                    z=grid,
                    colorscale=scale,
                    zmin=limits[0] if limits else None,
                    zmax=limits[1] if limits else None,
                    showscale=row == 1,
                    colorbar=colorbar | {"thickness": 12},
                    hovertemplate=f"lr %{{x:.2e}}<br>wd %{{y:.2e}}<br>{name} %{{z:.3f}}<extra></extra>",
                    name=name,
                ),
                row=row,
                col=col,
            )
            pruned = [t for t in members if t.outcome in ("pruned", "diverged")]
            figure.add_trace(
                go.Scatter(
                    x=[t.params[LR] for t in pruned],
                    y=[t.params[WEIGHT_DECAY] for t in pruned],
                    mode="markers",
                    marker={"symbol": "x-thin", "size": 9, "line": {"width": 2, "color": "white"}},
                    name="pruned",
                    legendgroup="pruned",
                    showlegend=row == 1 and col == 1,
                    text=[f"trial {t.number}: {t.reason or t.outcome}" for t in pruned],
                    hoverinfo="text",
                ),
                row=row,
                col=col,
            )
        figure.update_yaxes(
            title_text=f"weight decay<br>{label}" if len(bands) > 1 else "weight decay", row=row, col=1
        )
    figure.update_xaxes(type="log", title_text="learning rate", **log_ticks(lrs))
    figure.update_yaxes(type="log", **log_ticks(wds))
    figure.update_annotations(font_size=12)  # the subplot titles
    figure.update_layout(
        title=title + " (x: pruned)", template=TEMPLATE, height=330 * len(bands) + 80, showlegend=False
    )
    return figure


def heatmap_band_count(view: StudyView) -> int:
    """How many data-fraction bands (rows) :func:`heatmaps` draws."""
    trials = _heatmap_trials(view)
    return len(_fraction_bands(trials)) if trials else 0


def _heatmap_trials(view: StudyView) -> list[TrialView]:
    return [t for t in view.finished() if LR in t.params and WEIGHT_DECAY in t.params]


def log_ticks(values: list[float] | np.ndarray) -> dict:
    """Tick settings for a log axis over ``values`` that read at a glance: powers of ten
    (10^-3) over a decade or more, else 1-2-5 steps written out (2e-3); plotly's default
    labels the minor ticks of a short range with tiny lone digits."""
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size == 0:
        return {}
    low, high = np.log10(positive.min()), np.log10(positive.max())
    if high - low >= 1:
        return {"dtick": 1, "exponentformat": "power"}
    ticks = [
        mantissa * 10.0**exponent
        for exponent in range(int(np.floor(low)), int(np.ceil(high)) + 1)
        for mantissa in (1, 2, 5)
    ]
    inside = [t for t in ticks if 10**low / 1.5 <= t <= 10**high * 1.5]
    return {"tickvals": inside, "ticktext": [_short_number(t) for t in inside]}


def _short_number(value: float) -> str:
    """1 -> "1", 0.002 -> "2e-3", 5000 -> "5e3"."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return mantissa if int(exponent) == 0 else f"{mantissa}e{int(exponent)}"


def _limits(values: list[float | None]) -> tuple[float, float] | None:
    """One colour scale for every band: the range over all trials."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return (min(finite), max(finite)) if finite else None


def _fraction_bands(trials: list[TrialView]) -> list[tuple[str, list[TrialView]]]:
    if not all(DATA_FRACTION in t.params for t in trials):
        return [("all trials", trials)]
    fractions = np.array([t.params[DATA_FRACTION] for t in trials], dtype=float)
    distinct = np.unique(fractions)
    if len(distinct) <= FRACTION_BANDS:
        return [
            (f"r = {r:.2g}", [t for t, f in zip(trials, fractions, strict=True) if f == r]) for r in distinct
        ]
    cuts = np.quantile(fractions, np.linspace(0, 1, FRACTION_BANDS + 1))
    bands = []
    for i, (low, high) in enumerate(itertools.pairwise(cuts)):
        last = i == FRACTION_BANDS - 1
        members = [
            t
            for t, f in zip(trials, fractions, strict=True)
            if low <= f and (f <= high if last else f < high)
        ]
        if members:
            bands.append((f"r in [{low:.2f}, {high:.2f}{']' if last else ')'}", members))
    return bands


def _log_edges(values: list[float]) -> np.ndarray:
    logs = np.log10(np.asarray(values, dtype=float))
    distinct = np.unique(np.round(logs, 9))
    if len(distinct) <= HEATMAP_CELLS:  # a grid: one cell per value
        if len(distinct) == 1:
            return np.array([distinct[0] - 0.5, distinct[0] + 0.5])
        middle = (distinct[:-1] + distinct[1:]) / 2
        return np.concatenate([[2 * distinct[0] - middle[0]], middle, [2 * distinct[-1] - middle[-1]]])
    return np.linspace(logs.min(), logs.max() + 1e-9, HEATMAP_CELLS + 1)


def _centres(log_edges: np.ndarray) -> np.ndarray:
    return 10 ** ((log_edges[:-1] + log_edges[1:]) / 2)


def _binned_mean(trials: list[TrialView], value_of, lr_edges: np.ndarray, wd_edges: np.ndarray) -> list:
    sums = np.zeros((len(wd_edges) - 1, len(lr_edges) - 1))
    counts = np.zeros_like(sums)
    for t in trials:
        value = value_of(t)
        if value is None or not np.isfinite(value):
            continue
        i = np.clip(
            np.searchsorted(wd_edges, np.log10(t.params[WEIGHT_DECAY]), "right") - 1, 0, len(wd_edges) - 2
        )
        j = np.clip(np.searchsorted(lr_edges, np.log10(t.params[LR]), "right") - 1, 0, len(lr_edges) - 2)
        sums[i, j] += value
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        means = sums / counts
    return [[None if np.isnan(v) else float(v) for v in row] for row in means]


# -- curves -----------------------------------------------------------------------------


def chosen_trials(view: StudyView, seed: int = 0) -> dict[str, TrialView]:
    """The trials worth a look: the best, the pruned one the forecast nearly kept, one at random."""
    finished = view.finished()
    chosen: dict[str, TrialView] = {}
    complete = [t for t in finished if t.value is not None]
    if complete:
        best = max if view.direction == "maximize" else min
        chosen["best"] = best(complete, key=lambda t: t.value)
    pruned = [t for t in finished if t.outcome == "pruned" and t.probability is not None]
    if pruned:
        chosen["pruned, closest call"] = max(pruned, key=lambda t: t.probability)
    others = [t for t in finished if t not in chosen.values()]
    if others:
        chosen["random"] = others[np.random.default_rng(seed).integers(len(others))]
    return chosen


def curves(
    trials: dict[str, TrialView], curve_data: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]
) -> go.Figure:
    """Loss (log-log), accuracy and weight norm against step + 1 for the labelled trials."""
    title = "Training curves"
    if not trials:
        return empty(title, "no finished trial yet")
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.45, 0.3, 0.25],
        vertical_spacing=0.05,
        subplot_titles=["loss (solid: train, dashed: validation)", "accuracy", "weight norm (L2)"],
    )
    palette = ["#1f77b4", "#d62728", "#9467bd", "#17becf", "#bcbd22", "#e377c2"]
    marks: dict[int, list[str]] = {}
    for (label, trial), color in zip(trials.items(), itertools.cycle(palette)):
        name = f"{label}: trial {trial.number} ({trial.outcome})"
        series = curve_data.get(trial.number, {})
        for row, key, dash in (
            (1, "train_loss", "solid"),
            (1, "val_loss", "dash"),
            (2, "train_acc", "solid"),
            (2, "val_acc", "dash"),
            (3, "weight_norm", "solid"),
        ):
            if key not in series:
                continue
            steps, values = series[key]
            figure.add_trace(
                go.Scattergl(
                    x=steps + 1,
                    y=values,
                    mode="lines",
                    line={"color": color, "dash": dash, "width": 1.4},
                    name=name,
                    legendgroup=name,
                    showlegend=key == "train_loss",
                    hovertemplate=f"trial {trial.number} {key}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        for step, text, dash in ((trial.decided_at, trial.decision, "dash"), (trial.t4, "grok", "dot")):
            if step is not None:
                figure.add_vline(x=step + 1, line={"color": color, "dash": dash, "width": 1})
                marks.setdefault(step, []).append(f"{text} ({trial.number})")
    for step, texts in marks.items():  # one label per marked step (trials share the probe step)
        figure.add_annotation(  # annotations, unlike shapes, take log10 positions on a log axis
            x=np.log10(step + 1),
            y=1.0,
            xref="x",
            yref="paper",
            text=", ".join(texts),
            font={"size": 10},
            showarrow=False,
            textangle=-90,
            xanchor="right",
            yanchor="top",
        )
    shown = [curve_data.get(trial.number, {}) for trial in trials.values()]
    last_steps = [steps[-1] + 1 for series in shown for steps, _ in series.values() if len(steps)]
    losses = [values for series in shown for key, (_, values) in series.items() if key.endswith("_loss")]
    figure.update_xaxes(type="log", **log_ticks([1, *last_steps]))
    figure.update_xaxes(title_text="step + 1", row=3, col=1)
    figure.update_yaxes(type="log", row=1, col=1, **log_ticks(np.concatenate([[], *losses])))
    figure.update_yaxes(range=[-0.02, 1.02], row=2, col=1)
    figure.update_layout(
        title=title + " (dashed line: probe and decision, dotted: grok step)",
        template=TEMPLATE,
        height=720,
        legend={"orientation": "h", "y": -0.08},
    )
    return figure


# -- timeline and compute ---------------------------------------------------------------


def timeline(view: StudyView) -> go.Figure:
    """Per trial a probe bar and a continuation bar in steps; below, compute spent so far."""
    title = "Sweep timeline"
    trials = sorted(view.trials, key=lambda t: t.number)
    if not trials:
        return empty(title, "no trial yet")
    figure = make_subplots(
        rows=2,
        cols=1,
        row_heights=[0.65, 0.35],
        vertical_spacing=0.12,
        subplot_titles=["steps trained per trial (light: probe, dark: continuation)", "compute, cumulative"],
    )
    for outcome, color in OUTCOME_COLORS.items():
        members = [t for t in trials if t.outcome == outcome]
        if not members:
            continue
        probe = [min(t.steps_trained, t.probe_step or view.probe_steps or t.steps_trained) for t in members]
        continued = [t.steps_trained - p for t, p in zip(members, probe, strict=True)]
        labels = [f"trial {t.number}" for t in members]
        hover = [f"trial {t.number}: {outcome}, {t.steps_trained:,} steps" for t in members]
        segments = ((probe, None, 0.45, True), (continued, probe, 1.0, False))  # probe, continuation
        for x, base, opacity, first in segments:
            figure.add_trace(
                go.Bar(
                    y=labels,
                    x=x,
                    base=base,
                    orientation="h",
                    marker={"color": color, "opacity": opacity},
                    name=outcome,
                    legendgroup=outcome,
                    showlegend=first,
                    hovertext=hover,
                    hoverinfo="text",
                ),
                row=1,
                col=1,
            )
    finished = sorted(view.finished(), key=lambda t: t.number)
    order = np.arange(1, len(finished) + 1)
    figure.add_trace(
        go.Scatter(
            x=order,
            y=np.cumsum([t.steps_trained for t in finished]),
            name="spent",
            mode="lines+markers",
            line={"color": "#1f77b4"},
        ),
        row=2,
        col=1,
    )
    if view.full_steps:
        figure.add_trace(
            go.Scatter(
                x=order,
                y=order * view.full_steps,
                name="unpruned sweep",
                mode="lines",
                line={"color": "#8c8c8c", "dash": "dash"},
            ),
            row=2,
            col=1,
        )
    figure.update_yaxes(
        categoryorder="array", categoryarray=[f"trial {t.number}" for t in reversed(trials)], row=1, col=1
    )
    figure.update_xaxes(title_text="steps", row=1, col=1)
    figure.update_xaxes(title_text="trials finished", row=2, col=1)
    figure.update_yaxes(title_text="steps", row=2, col=1)
    spent, unpruned = view.steps_spent(), view.steps_unpruned()
    saved = f": {spent:,} of {unpruned:,} steps, {1 - spent / unpruned:.0%} saved" if unpruned else ""
    figure.update_layout(
        title=title + saved, template=TEMPLATE, barmode="overlay", height=max(420, 16 * len(trials) + 300)
    )
    return figure


# -- grokking time and calibration ------------------------------------------------------


def grok_time(view: StudyView) -> go.Figure:
    """Grok step t4 against data fraction r, with t4(r) = a r^-gamma + b fitted."""
    title = "Grokking time against data fraction"
    grokked = [t for t in view.finished() if t.t4 is not None and DATA_FRACTION in t.params]
    if not grokked:
        return empty(title, "no trial has grokked yet (or data_fraction is not searched)")
    r = np.array([t.params[DATA_FRACTION] for t in grokked], dtype=float)
    t4 = np.array([t.t4 for t in grokked], dtype=float)
    figure = go.Figure(layout={"template": TEMPLATE, "height": 420})
    figure.add_trace(
        go.Scatter(
            x=r,
            y=t4,
            mode="markers",
            name="grokked trials",
            marker={"color": OUTCOME_COLORS["grokked"]},
            text=[f"trial {t.number}" for t in grokked],
        )
    )
    try:
        law = fit_grok_time(r, t4)
    except (ValueError, RuntimeError) as error:  # too few fractions, or no convergence
        subtitle = f"power law not fitted: {error}"
    else:
        grid = np.linspace(r.min(), r.max(), 100)
        figure.add_trace(
            go.Scatter(x=grid, y=law.predict(grid), mode="lines", name="fit", line={"color": "#333333"})
        )
        subtitle = f"t4(r) = {law.a:.3g} r^-{law.gamma:.2f} + {law.b:.3g}"
    figure.update_layout(
        title=f"{title}<br><sup>{subtitle}</sup>",
        xaxis_title="data fraction r",
        yaxis_title="grok step t4",
        yaxis_type="log",
    )
    figure.update_yaxes(**log_ticks(t4))
    return figure


def calibration(view: StudyView, bins: int = 5) -> go.Figure:
    """Forecast probability against the observed grokking rate of trials run to the end.

    Only trials that continued past the probe have an observed outcome; pruned trials are
    not in this figure (their outcome is unknown by construction).
    """
    title = "Forecast calibration (trials run past the probe)"
    known = [t for t in view.finished() if t.value is not None and t.probability is not None]
    if not known:
        return empty(title, "no completed trial with a forecast yet")
    p = np.array([t.probability for t in known])
    grokked = np.array([t.grokked for t in known], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, p, "right") - 1, 0, bins - 1)
    mean_p, rate, count = [], [], []
    for b in range(bins):
        members = which == b
        if members.any():
            mean_p.append(float(p[members].mean()))
            rate.append(float(grokked[members].mean()))
            count.append(int(members.sum()))
    figure = go.Figure(layout={"template": TEMPLATE, "height": 420})
    figure.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "#8c8c8c"}
        )
    )
    figure.add_trace(
        go.Scatter(
            x=mean_p,
            y=rate,
            mode="markers+lines",
            name="observed",
            marker={"size": [8 + 3 * np.sqrt(c) for c in count]},
            text=[f"{c} trials" for c in count],
            hovertemplate="P %{x:.2f}<br>grokked %{y:.2f}<br>%{text}",
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title="forecast P(grok)",
        yaxis_title="observed grokking rate",
        xaxis_range=[-0.02, 1.02],
        yaxis_range=[-0.02, 1.02],
    )
    return figure
