"""The replay benchmark's results as a markdown table and a plotly figure (report format)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative

from grokforecast.bench.replay import ReplayOutcome
from grokforecast.viz.figures import TEMPLATE
from grokforecast.viz.html import figure_div, page

PALETTE = qualitative.Dark24
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "hexagon")


def _spread(values: Sequence[float], fmt: str) -> str:
    """Mean, and the range over trial orders when they differ."""
    mean = statistics.fmean(values)
    low, high = min(values), max(values)
    return f"{mean:{fmt}}" if low == high else f"{mean:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def _groups(outcomes: Sequence[ReplayOutcome]) -> dict[tuple[str, str], list[ReplayOutcome]]:
    """Outcomes by corpus and stopper, corpora in the order they first appear."""
    corpora = list(dict.fromkeys(o.corpus for o in outcomes))
    groups: dict[tuple[str, str], list[ReplayOutcome]] = {}
    for outcome in sorted(outcomes, key=lambda o: corpora.index(o.corpus)):
        groups.setdefault((outcome.corpus, outcome.stopper), []).append(outcome)
    return groups


def _column(runs: list[ReplayOutcome], value: Callable[[ReplayOutcome], float | None], fmt: str) -> str:
    values = [v for v in map(value, runs) if v is not None]
    return _spread(values, fmt) if values else "-"


def markdown_table(outcomes: Sequence[ReplayOutcome]) -> str:
    """One row per corpus and stopper: means over trial orders, with their range.

    Recall is over the grokking runs outside the label band (the target's measure); those
    in the band are counted in their own column. The runs kept are also counted over all
    orders, so that a recall printed as 0.95 can be told from 18 of 19 (0.947).
    """
    lines = [
        "| corpus | stopper | recall outside the band | kept outside the band, all orders "
        "| kept in the band | non-grokking stopped | x no pruning | x oracle | AUC at the probe "
        "| best val acc | steps to first grok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (corpus, stopper), runs in _groups(outcomes).items():
        cells = [
            _column(runs, lambda o: o.recall_clear, ".2f"),
            f"{sum(o.found_clear for o in runs)} / {sum(o.grokking_clear for o in runs)}",
            f"{sum(o.found_borderline for o in runs)} / {sum(o.grokking_borderline for o in runs)}",
            _column(runs, lambda o: o.specificity, ".2f"),
            _column(runs, lambda o: o.steps / o.steps_unpruned, ".2f"),
            _column(runs, lambda o: o.steps / o.steps_oracle, ".2f"),
            _column(runs, lambda o: o.auc, ".3f"),
            _column(runs, lambda o: o.best_value, ".3f"),
            _column(runs, lambda o: o.steps_to_first_grok, ",.0f"),
        ]
        lines.append(f"| {corpus} | {stopper} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_table(outcomes: Sequence[ReplayOutcome]) -> str:
    """One row per stopper and model family: the grokking runs kept outside the label
    band over every corpus and order of the family, the range of compute against the
    oracle over its corpora, and the range of the forecast's AUC."""
    lines = [
        "| stopper | family | kept outside the band | x oracle | AUC at the probe "
        "| corpora meeting 95 % at <= 1.3x |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[ReplayOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault((stopper_family(outcome.stopper), outcome.family), []).append(outcome)
    for (stopper, family), runs in groups.items():
        corpora = _groups(runs)
        compute = [statistics.fmean(o.steps / o.steps_oracle for o in c) for c in corpora.values()]
        recall = [
            sum(o.found_clear for o in c) / max(sum(o.grokking_clear for o in c), 1) for c in corpora.values()
        ]
        met = sum(r >= 0.95 and x <= 1.3 for r, x in zip(recall, compute, strict=True))
        aucs = [o.auc for o in runs if o.auc is not None]
        found, grokking = sum(o.found_clear for o in runs), sum(o.grokking_clear for o in runs)
        lines.append(
            f"| {stopper} | {family} | {found} / {grokking} ({found / max(grokking, 1):.0%}) "
            f"| {min(compute):.2f}-{max(compute):.2f} "
            f"| {f'{min(aucs):.2f}-{max(aucs):.2f}' if aucs else '-'} | {met} of {len(corpora)} |"
        )
    return "\n".join(lines)


def stopper_family(name: str) -> str:
    """A stopper's name without the settings that differ per corpus (tuned threshold, grace).

    >>> stopper_family("HjorthPruner (held-out, tuned: threshold 0.34)")
    'HjorthPruner (held-out, tuned)'
    >>> stopper_family("Ray Tune ASHA (val_acc, grace 300, rf 3)")
    'Ray Tune ASHA (val_acc, rf 3)'
    """
    return re.sub(r": threshold [\d.]+|, grace \d+", "", name)


def recall_compute_figure(outcomes: Sequence[ReplayOutcome]) -> go.Figure:
    """Recall against compute (x the oracle) per stopper: one marker per corpus and order."""
    figure = go.Figure(layout={"template": TEMPLATE, "height": 560})
    by_stopper: dict[str, list[ReplayOutcome]] = {}
    for outcome in outcomes:
        by_stopper.setdefault(stopper_family(outcome.stopper), []).append(outcome)
    for index, (stopper, runs) in enumerate(by_stopper.items()):
        figure.add_trace(
            go.Scatter(
                x=[o.steps / o.steps_oracle for o in runs],
                y=[o.recall_clear for o in runs],
                mode="markers",
                name=stopper,
                marker={
                    "color": PALETTE[index % len(PALETTE)],
                    "size": 9,
                    "symbol": SYMBOLS[index % len(SYMBOLS)],
                },
                text=[f"{o.stopper}<br>{o.corpus}, order {o.order}" for o in runs],
                hovertemplate="%{text}<br>x oracle %{x:.2f}<br>recall %{y:.2f}<extra></extra>",
            )
        )
    figure.add_hline(y=0.95, line={"dash": "dot", "color": "#8c8c8c"})
    figure.add_vline(x=1.3, line={"dash": "dot", "color": "#8c8c8c"})
    figure.update_layout(
        title="Grokking runs kept against compute, per stopper (dotted: the 95 % / 1.3x target)",
        xaxis_title="compute, x the oracle's (probe everything, continue the runs that grok)",
        yaxis_title="recall (grokking runs outside the label band trained to their grok step)",
    )
    return figure


def write_figure(outcomes: Sequence[ReplayOutcome], path: Path) -> Path:
    """The figure as a self-contained HTML page, like ``grokforecast report``'s."""
    body = "<h1>grokforecast bench replay</h1>" + figure_div(
        recall_compute_figure(outcomes), "replay", include_plotlyjs=True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page("grokforecast: pruner replay", body), encoding="utf-8")
    return path
