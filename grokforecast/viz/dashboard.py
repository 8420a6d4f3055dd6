"""``grokforecast dashboard``: a read-only web app over a study database (Starlette).

Pages:

- ``/``: the studies in the database, with their trial counts;
- ``/study/{name}``: the summary, every figure of the report and the trials, refreshed
  in place while a sweep runs (the page polls ``/api/study/{name}``, which answers 204
  while nothing changed, and redraws with ``Plotly.react``);
- ``/study/{name}/trial/{number}``: parameters, curves, the forecast's features and the
  reason for the decision.

Every handler reads; none writes (the storage is opened ``read_only``). A study page
queries the trials' attributes and the curves of the three trials it draws, thinned
for display, so large studies stay quick.

Example:

    .. code-block:: python

        from grokforecast.viz.dashboard import create_app
        import uvicorn

        uvicorn.run(create_app("sqlite:///runs/quickstart.db"), host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from html import escape
from urllib.parse import quote

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from grokforecast.errors import GrokforecastError
from grokforecast.inside.snapshots import snapshot_files
from grokforecast.inside.trial_views import snapshot_folder_of, trial_views
from grokforecast.sweep.plan import stored_plan
from grokforecast.sweep.storage import open_storage
from grokforecast.viz import figures
from grokforecast.viz.html import figure_div, outcome_dot, page, summary, table, trial_facts, trials_table
from grokforecast.viz.inside_figures import inside_figures
from grokforecast.viz.report import study_figures
from grokforecast.viz.study_data import StudyView, display_curves, load_study_view, trial_view
from grokforecast.viz.web_security import guarded

PLOTLY_JS = "/static/plotly.min.js"

REFRESH_SCRIPT = """
<script>
(function () {
  let fingerprint = %(fingerprint)s;
  async function refresh() {
    try {
      const response = await fetch(%(api)s + "?since=" + encodeURIComponent(fingerprint));
      if (response.status === 200) {
        const data = await response.json();
        fingerprint = data.fingerprint;
        document.getElementById("summary").innerHTML = data.summary;
        document.getElementById("trials").innerHTML = data.table;
        for (const [id, figure] of Object.entries(data.figures)) {
          Plotly.react(id, figure.data, figure.layout);
        }
      }
    } finally {
      setTimeout(refresh, %(refresh_ms)d);
    }
  }
  setTimeout(refresh, %(refresh_ms)d);
})();
</script>
"""


def create_app(storage_url: str, refresh_seconds: float = 10.0, allowed_hosts: Sequence[str] = ()) -> ASGIApp:
    """The dashboard's ASGI app over the study database at ``storage_url`` (read-only),
    answering loopback names and ``allowed_hosts`` only (:mod:`grokforecast.viz.web_security`)."""
    storage = open_storage(storage_url, read_only=True)
    engine = storage.engine
    refresh_ms = int(refresh_seconds * 1000)

    def load(name: str) -> optuna.Study:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise HTTPException(404, f"no study {name!r} in this database") from None

    def study_list(request: Request) -> HTMLResponse:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        rows = [
            [
                f"<a href='/study/{quote(s.study_name, safe='')}'>{escape(s.study_name)}</a>",
                str(s.n_trials),
                escape(s.direction.name.lower() if s.directions and len(s.directions) == 1 else "multi"),
                escape(str(s.datetime_start or "-")),
            ]
            for s in summaries
        ]
        body = "<h1>grokforecast studies</h1>" + (
            table(["study", "trials", "direction", "started"], rows, text_columns={0, 2, 3})
            if rows
            else "<p>No studies in this database yet.</p>"
        )
        return HTMLResponse(page("grokforecast studies", body))

    def study_page(request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        view = load_study_view(load(name))
        divs = "".join(
            f"<section>{figure_div(figure, figure_id)}</section>"
            for figure_id, figure in study_figures(view, engine).items()
        )
        script = REFRESH_SCRIPT % {
            "fingerprint": json.dumps(fingerprint(view)),
            "api": json.dumps(f"/api/study/{quote(name, safe='')}"),
            "refresh_ms": refresh_ms,
        }
        body = (
            f"<p><a href='/'>studies</a></p><h1>Study <code>{escape(name)}</code></h1>"
            f"<div id='summary'>{summary(view)}</div>{divs}"
            f"<h2>Trials</h2><div id='trials'>{_linked_trials(view)}</div>{script}"
        )
        return HTMLResponse(page(f"grokforecast: {name}", body, head=f"<script src='{PLOTLY_JS}'></script>"))

    def study_api(request: Request) -> Response:
        view = load_study_view(load(request.path_params["name"]))
        current = fingerprint(view)
        if request.query_params.get("since") == current:
            return Response(status_code=204)
        return JSONResponse(
            {
                "fingerprint": current,
                "summary": summary(view),
                "table": _linked_trials(view),
                "figures": {
                    figure_id: json.loads(pio.to_json(figure))
                    for figure_id, figure in study_figures(view, engine).items()
                },
            }
        )

    def trial_page(request: Request) -> HTMLResponse:
        name, number = request.path_params["name"], request.path_params["number"]
        study = load(name)
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        except KeyError:
            raise HTTPException(404, f"study {name!r} has no trial {number}") from None
        trial = trial_view(storage.get_trial(trial_id))
        curve_figure = figures.curves({"trial": trial}, display_curves(engine, name, [number]))
        feature_rows = [
            [
                escape(feature),
                f"{value:.4g}",
                f"{trial.contributions[feature]:+.2f}" if feature in trial.contributions else "",
            ]
            for feature, value in sorted(trial.features.items())
        ]
        feature_table = (
            table(["feature", "value", "logit contribution (top 3)"], feature_rows, text_columns={0})
            if feature_rows
            else "<p class='muted'>No forecast features recorded for this trial.</p>"
        )
        body = (
            f"<p><a href='/'>studies</a> / <a href='/study/{quote(name, safe='')}'>{escape(name)}</a></p>"
            f"<h1>{outcome_dot(trial.outcome)}Trial {number} of <code>{escape(name)}</code></h1>"
            f"{trial_facts(trial)}<section>{figure_div(curve_figure, 'curves')}</section>"
            f"<h2>Forecast features at the probe</h2>{feature_table}"
            f"{_inside(study, storage.get_trial(trial_id), storage_url)}"
        )
        return HTMLResponse(
            page(f"grokforecast: {name} trial {number}", body, head=f"<script src='{PLOTLY_JS}'></script>")
        )

    def plotly_js(request: Request) -> Response:
        return Response(
            _plotly_js(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def not_found(request: Request, error: Exception) -> HTMLResponse:
        assert isinstance(error, HTTPException)
        return HTMLResponse(
            page("grokforecast: not found", f"<p><a href='/'>studies</a></p><p>{escape(error.detail)}</p>"),
            status_code=error.status_code,
        )

    app = Starlette(
        routes=[
            Route("/", study_list),
            # Study names are anyone's text, "/" included: matched as paths, trial pages first.
            Route("/study/{name:path}/trial/{number:int}", trial_page),
            Route("/study/{name:path}", study_page),
            Route("/api/study/{name:path}", study_api),
            Route(PLOTLY_JS, plotly_js),
            Route("/healthz", health),
        ],
        exception_handlers={HTTPException: not_found},
    )
    return guarded(app, allowed_hosts)


def _inside(study: optuna.Study, trial: optuna.trial.FrozenTrial, storage_url: str) -> str:
    """The views inside the trial over its snapshots, found where the sweep wrote them
    (relative to the dashboard's working folder); a note where there are none."""
    plan = stored_plan(study, storage_url)
    if plan is None or not snapshot_files(snapshot_folder_of(plan, trial)):
        return (
            "<h2>Inside the trial</h2><p class='muted'>No snapshots of this trial here: only kept trials "
            "keep them, beside the study's runs (start the dashboard in the folder the sweep ran in).</p>"
        )
    try:
        views, _ = trial_views(plan, trial)
    except GrokforecastError as error:
        return f"<h2>Inside the trial</h2><p class='muted'>{escape(str(error))}</p>"
    figures_inside = inside_figures(views, f"trial {trial.number}")
    return "<h2>Inside the trial</h2>" + "".join(
        f"<section>{figure_div(figure, f'inside-{name}')}</section>"
        for name, figure in figures_inside.items()
    )


def fingerprint(view: StudyView) -> str:
    """Changes whenever a trial starts, finishes or trains further (the page then redraws)."""
    state = [(t.number, t.state.value, t.steps_trained) for t in view.trials]
    return hashlib.sha1(repr(state).encode()).hexdigest()[:16]


def _linked_trials(view: StudyView) -> str:
    return trials_table(view, trial_link=f"/study/{quote(view.name, safe='')}/trial/{{number}}")


@cache
def _plotly_js() -> str:
    return get_plotlyjs()
