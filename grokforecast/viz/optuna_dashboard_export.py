"""The report's figures and the pruning reasons, saved where optuna-dashboard shows them.

optuna-dashboard draws plotly figures saved into a study
(``optuna_dashboard.save_plotly_graph_object``) and shows a Markdown note per trial
(``optuna_dashboard.save_note``). Figures are saved under fixed ids, so saving again
replaces them instead of piling up copies. optuna-dashboard draws each in a frame of
:data:`FRAME_HEIGHT` pixels and cuts what is taller, so the heat maps go one
data-fraction band per figure and no figure is taller than the frame.
"""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from grokforecast.errors import GrokforecastError
from grokforecast.viz.figures import heatmap_band_count, heatmaps
from grokforecast.viz.study_data import StudyView

FIGURE_ID_PREFIX = "grokforecast-"
#: Height in pixels of the frame optuna-dashboard draws a saved figure in.
FRAME_HEIGHT = 450


def save_to_optuna_dashboard(
    study: optuna.Study, view: StudyView, figures: dict[str, go.Figure]
) -> tuple[int, int]:
    """Save ``figures`` (:func:`framed`) into the study and a note on each pruned trial;
    returns the counts."""
    try:
        from optuna_dashboard import save_note, save_plotly_graph_object
    except ImportError:
        raise GrokforecastError(
            "--to-optuna-dashboard needs optuna-dashboard; "
            "install it with: pip install 'grokforecast[optuna-dashboard]'"
        ) from None
    shown = framed(view, figures)
    for figure_id, figure in shown.items():
        save_plotly_graph_object(study, figure, graph_object_id=FIGURE_ID_PREFIX + figure_id)
    trial_ids = {t.number: t._trial_id for t in study.get_trials(deepcopy=False)}
    notes = 0
    for trial in view.trials:
        if trial.outcome in ("pruned", "diverged") and trial.reason:
            save_note(optuna.Trial(study, trial_ids[trial.number]), pruning_note(trial.number, trial.reason))
            notes += 1
    return len(shown), notes


def framed(view: StudyView, figures: dict[str, go.Figure]) -> dict[str, go.Figure]:
    """``figures`` as optuna-dashboard can show them: the heat maps one band per figure
    (``heatmaps-1``, ...), and every figure at most :data:`FRAME_HEIGHT` high."""
    shown: dict[str, go.Figure] = {}
    for figure_id, figure in figures.items():
        bands = heatmap_band_count(view) if figure_id == "heatmaps" else 0
        if bands > 1:
            shown |= {f"heatmaps-{band + 1}": heatmaps(view, band) for band in range(bands)}
        else:
            shown[figure_id] = figure
    for figure in shown.values():
        if (figure.layout.height or 0) > FRAME_HEIGHT:
            figure.update_layout(height=FRAME_HEIGHT)
    return shown


def pruning_note(number: int, reason: str) -> str:
    """The Markdown note optuna-dashboard shows on a pruned trial."""
    return f"## Trial {number}: pruned by grokforecast\n\n{reason}\n"
