"""Figures of the views inside one trial, small multiples over its snapshots.

One figure per kind of view (:mod:`grokforecast.inside.views`), one column per snapshot,
so that what changed between the probe and the grok step reads left to right.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokforecast.inside.snapshot_views import SnapshotViews

HEIGHT = 320


def inside_figures(views: list[SnapshotViews], title: str) -> dict[str, go.Figure]:
    """The figures of a trial's snapshots, by name (the Fourier one for modular tasks only)."""
    figures = {
        "representation": representation(views, title),
        "landscape": landscape(views, title),
        "norms": norms_over_steps(views, title),
    }
    if any(v.fourier for v in views):
        figures["fourier"] = fourier(views, title)
    return figures


def _columns(views: list[SnapshotViews], subtitle, rows: int = 1) -> go.Figure:
    titles = [subtitle(v) for v in views] + [""] * (rows - 1) * len(views)
    return make_subplots(rows=rows, cols=len(views), subplot_titles=titles, horizontal_spacing=0.04)


def _sized(figure: go.Figure, title: str, rows: int = 1) -> go.Figure:
    figure.update_layout(
        title=title,
        height=HEIGHT * rows,  # the page's width: a column per snapshot
        margin={"t": 80, "l": 50, "r": 20, "b": 40},
        showlegend=True,
    )
    return figure


def representation(views: list[SnapshotViews], title: str) -> go.Figure:
    """PC1 against PC2 of the representation at each snapshot, coloured by residue or label."""
    figure = _columns(views, lambda v: f"step {v.step}: {sum(v.pca_explained[:2]):.0%} of variance")
    for column, view in enumerate(views, start=1):
        figure.add_trace(
            go.Scatter(
                x=[point[0] for point in view.pca],
                y=[point[1] if len(point) > 1 else 0.0 for point in view.pca],
                mode="markers",
                marker={"color": view.pca_labels, "colorscale": "HSV", "size": 6},
                text=[str(label) for label in view.pca_labels],
                name=f"step {view.step}",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
    kind = views[0].representation if views else "representation"
    return _sized(figure, f"{title}: {kind} on its first two principal components")


def fourier(views: list[SnapshotViews], title: str) -> go.Figure:
    """Share of the embedding's power per frequency at each snapshot."""
    figure = _columns(views, lambda v: f"step {v.step}: top 5 hold {v.fourier_sparsity or 0:.0%}")
    for column, view in enumerate(views, start=1):
        figure.add_trace(
            go.Bar(
                x=list(range(len(view.fourier))), y=view.fourier, showlegend=False, marker_color="#1f5fa8"
            ),
            row=1,
            col=column,
        )
        figure.update_xaxes(title_text="frequency k", row=1, col=column)
    return _sized(figure, f"{title}: Fourier power of the embedding over the residues")


def landscape(views: list[SnapshotViews], title: str) -> go.Figure:
    """Top row: the loss on the line from the initial weights (t = 0) through the
    snapshot's (t = 1); bottom row: along the top Hessian eigenvector."""
    figure = _columns(views, lambda v: f"step {v.step}: top eigenvalue {v.top_eigenvalue:.3g}", rows=2)
    for column, view in enumerate(views, start=1):
        first = column == 1
        for name, values, color in (
            ("train loss", view.line_train_loss, "#1f77b4"),
            ("val loss", view.line_val_loss, "#d62728"),
        ):
            figure.add_trace(
                go.Scatter(x=view.line_t, y=values, name=name, line={"color": color}, showlegend=first),
                row=1,
                col=column,
            )
        figure.add_trace(
            go.Scatter(
                x=view.eigen_t,
                y=view.eigen_train_loss,
                name="train loss along the top eigenvector",
                line={"color": "#2ca02c"},
                showlegend=first,
            ),
            row=2,
            col=column,
        )
        figure.update_xaxes(title_text="t (init -> snapshot)", row=1, col=column)
        figure.update_xaxes(title_text="step / |weights|", row=2, col=column)
    figure.update_yaxes(type="log", row=1)
    return _sized(figure, f"{title}: loss along two directions in weight space", rows=2)


def norms_over_steps(views: list[SnapshotViews], title: str) -> go.Figure:
    """Per-layer weight norms, the top Hessian eigenvalue and the gradient norm, by step."""
    figure = make_subplots(
        rows=1, cols=3, subplot_titles=["weight norm per layer", "top Hessian eigenvalue", "gradient norm"]
    )
    steps = [v.step for v in views]
    for name in views[0].layer_norms if views else []:
        figure.add_trace(
            go.Scatter(x=steps, y=[v.layer_norms[name] for v in views], name=name, mode="lines+markers"),
            row=1,
            col=1,
        )
    figure.add_trace(
        go.Scatter(x=steps, y=[v.top_eigenvalue for v in views], name="top eigenvalue", mode="lines+markers"),
        row=1,
        col=2,
    )
    figure.add_trace(
        go.Scatter(x=steps, y=[v.gradient_norm for v in views], name="gradient norm", mode="lines+markers"),
        row=1,
        col=3,
    )
    for column in (1, 2, 3):
        figure.update_xaxes(title_text="step", row=1, col=column)
    figure.update_yaxes(type="log", row=1, col=3)
    return _sized(figure, f"{title}: norms and curvature over the run")
