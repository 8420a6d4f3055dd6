"""Reports and dashboards: figures from a real study, the offline report, the web app."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from starlette.testclient import TestClient

from grokforecast.backends.optuna.workers import run_worker
from grokforecast.core.decision import Decision, DecisionRecord
from grokforecast.core.policy import PolicySettings, StoppingPolicy, StudyContext
from grokforecast.errors import GrokforecastError
from grokforecast.history import History, hyperparameters_from
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import open_storage, read_curves
from grokforecast.sweep.study import create_study
from grokforecast.viz import figures
from grokforecast.viz.dashboard import create_app
from grokforecast.viz.optuna_dashboard_export import FRAME_HEIGHT
from grokforecast.viz.study_data import (
    StudyView,
    TrialView,
    display_curves,
    load_study_view,
    thin,
    trial_view,
)
from grokforecast.vocabulary import DECISION_ATTR
from studies import GROKFORECAST, storage_urls, study_text, write_study

NAME = "viz"
LOCAL = "http://127.0.0.1:8080"  # the Host a browser on this machine sends
FIGURE_IDS = ("heatmaps", "curves", "timeline", "grok-time", "calibration")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> SweepPlan:
    """A real study of six tiny trials: three pruned at the probe, three run to full length."""
    folder = tmp_path_factory.mktemp("viz")
    url = f"sqlite:///{folder / 'viz.db'}"
    for n_trials, threshold in ((3, 1.0), (6, 0.0)):  # every forecast is below 1 and above 0
        path = write_study(
            folder, study_text(NAME, n_trials=n_trials, threshold=threshold), f"{threshold}.toml"
        )
        plan = SweepPlan.load(path, url)
        create_study(plan)
        run_worker(SweepPlan.load(path, url))
    return plan


def _view(plan: SweepPlan) -> tuple[StudyView, object]:
    return _view_of(plan.storage_url, NAME)


def _view_of(url: str, name: str) -> tuple[StudyView, object]:
    storage = open_storage(url, read_only=True)
    return load_study_view(optuna.load_study(study_name=name, storage=storage)), storage.engine


def _trial(number: int, outcome: str, **values) -> TrialView:
    state = TrialState.PRUNED if outcome == "pruned" else TrialState.COMPLETE
    defaults = {
        "params": {"lr": 1e-3, "weight_decay": 1.0, "data_fraction": 0.5},
        "value": None if outcome == "pruned" else 1.0,
        "steps_trained": 100,
        "grokked": outcome == "grokked",
        "t2": None,
        "t4": None,
        "final_val_acc": 0.0,
        "probability": 0.5,
        "decision": "prune" if outcome == "pruned" else "keep",
        "decided_at": 99,
        "probe_step": 99,
        "reason": f"reason of {number}",
    }
    return TrialView(number=number, state=state, outcome=outcome, **(defaults | values))


# -- the study as the views read it -----------------------------------------------------


def test_the_study_view_reads_outcomes_decisions_and_features(swept: SweepPlan) -> None:
    view, _ = _view(swept)
    assert (view.probe_steps, view.full_steps) == (40, 240)
    assert [t.outcome == "pruned" for t in view.trials] == [True] * 3 + [False] * 3
    for trial in view.trials:
        assert trial.decision == ("prune" if trial.number < 3 else "keep")
        assert trial.probe_step == trial.decided_at == 40 and 0.0 < trial.probability < 1.0
        # Every forecast feature is recorded with the decision, the spectral activity among them.
        assert trial.activity is not None and np.isfinite(trial.activity)
        assert set(trial.contributions) <= set(trial.features) and len(trial.contributions) == 3
    assert view.steps_spent() == 3 * 40 + 3 * 240 and view.steps_unpruned() == 6 * 240


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "memory"])
def test_the_study_view_reads_from_sql_what_optuna_reads(backend: str, tmp_path: Path) -> None:
    """The view's column-wise SQL read equals Optuna's own trials, every state included."""
    urls = dict(storage_urls(tmp_path)) | {"memory": None}
    if backend not in urls:
        pytest.skip("GROKFORECAST_TEST_POSTGRES_URL is not set")
    storage = open_storage(urls[backend]) if urls[backend] else optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=f"sql-view-{uuid.uuid4().hex[:8]}", storage=storage)
    for number, state in enumerate(("COMPLETE", "PRUNED", "FAIL", "RUNNING")):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("grokfast", ["none", "ema"])
        if state != "RUNNING":
            trial.set_user_attr("steps_trained", 100 * number)
        trial.set_user_attr("grokforecast_decision", {"decision": "keep", "probability": 0.25, "step": 9})
        for step in range(0, 30 + number, 10):
            trial.report(1.0 / (step + 1), step)
        if state != "RUNNING":
            study.tell(trial, 0.5 if state == "COMPLETE" else None, state=TrialState[state])
    view = load_study_view(study)
    assert view.trials == [trial_view(t) for t in study.get_trials(deepcopy=False)]
    assert [t.state.name for t in view.trials] == ["COMPLETE", "PRUNED", "FAIL", "RUNNING"]
    assert view.trials[0].value == 0.5 and view.trials[3].steps_trained == 30  # its last report
    assert {t.params["grokfast"] for t in view.trials} <= {"none", "ema"}


def test_the_stored_curves_of_a_pruned_trial_give_back_its_forecast(swept: SweepPlan) -> None:
    storage = open_storage(swept.storage_url, read_only=True)
    study = optuna.load_study(study_name=NAME, storage=storage)
    stored = read_curves(storage.engine, NAME)
    policy = StoppingPolicy(PolicySettings(probe_step=40, recalibrate=False))
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert len(pruned) == 3
    for trial in pruned:
        recorded = trial.user_attrs[DECISION_ATTR]
        history = History.from_stored(
            stored[trial.number], hyperparameters=hyperparameters_from(trial.params)
        )
        assert history.newest_step == recorded["step"] == 40  # what the pruner read: nothing later
        verdict = policy.decide(history, trial.number, StudyContext())
        # The database keeps float32: the forecast agrees to float32's precision.
        assert verdict.record.probability == pytest.approx(recorded["probability"], abs=1e-4)


def test_thinned_curves_keep_their_ends_and_extremes_and_query_only_the_trials_asked(
    swept: SweepPlan,
) -> None:
    _, engine = _view(swept)
    shown = display_curves(engine, NAME, [4], max_points=30)
    assert list(shown) == [4]
    steps, loss = read_curves(engine, NAME, [4])[4]["train_loss"]
    thinned_steps, thinned = shown[4]["train_loss"]
    assert len(thinned) <= 30 and thinned_steps[0] == steps[0] and thinned_steps[-1] == steps[-1]
    assert thinned.min() == loss.min() and thinned.max() == loss.max()
    _, short = thin(steps[:10], loss[:10], 30)
    assert (short == loss[:10]).all()


# -- figures ----------------------------------------------------------------------------


def test_heatmaps_average_each_cell_and_mark_the_pruned_trials() -> None:
    trials = [
        _trial(
            0, "grokked", params={"lr": 1e-3, "weight_decay": 0.1, "data_fraction": 0.3}, final_val_acc=1.0
        ),
        _trial(
            1, "pruned", params={"lr": 1e-3, "weight_decay": 0.1, "data_fraction": 0.3}, final_val_acc=0.2
        ),
        _trial(
            2, "grokked", params={"lr": 1e-2, "weight_decay": 1.0, "data_fraction": 0.3}, final_val_acc=0.9
        ),
        _trial(
            3, "pruned", params={"lr": 1e-2, "weight_decay": 1.0, "data_fraction": 0.6}, final_val_acc=0.0
        ),
    ]
    figure = figures.heatmaps(StudyView("s", "maximize", 99, 1000, trials))
    heat = [t for t in figure.data if t.type == "heatmap"]
    assert len(heat) == 2 * 3  # two data-fraction values (a grid), three panels each
    accuracy_at_r03 = np.array(heat[0].z, dtype=float)
    # lr and weight decay take two values each: a 2 x 2 grid, rows = weight decay.
    assert accuracy_at_r03[0, 0] == pytest.approx(0.6) and accuracy_at_r03[1, 1] == pytest.approx(0.9)
    assert np.isnan(accuracy_at_r03[0, 1]) and np.isnan(accuracy_at_r03[1, 0])
    marks = [t for t in figure.data if t.type == "scatter"]
    assert sum(len(t.x) for t in marks) == 3 * 2  # one pruned trial per band, on each panel
    assert "reason of 1" in marks[0].text[0]


def test_curves_timeline_grok_time_and_calibration_show_what_happened() -> None:
    r = np.array([0.1, 0.2, 0.25, 0.5, 1.0])
    t4 = 50 * r**-2.0 + 100  # whole steps at these fractions
    trials = [
        _trial(
            i,
            "grokked",
            params={"lr": 1e-3, "weight_decay": 1.0, "data_fraction": float(ri)},
            t4=round(ti),
            steps_trained=round(ti) + 50,
            probability=0.9,
        )
        for i, (ri, ti) in enumerate(zip(r, t4, strict=True))
    ] + [
        _trial(5, "pruned", probability=0.3),
        _trial(6, "kept, did not grok", probability=0.15, steps_trained=1000),
        # kept at the probe, pruned at the second look: its probe is the study's
        _trial(7, "pruned", probability=0.2, steps_trained=500, decided_at=500, probe_step=None),
    ]
    view = StudyView("s", "maximize", 100, 1000, trials)

    law_title = figures.grok_time(view).layout.title.text
    assert "t4(r) = 50 r^-2.00 + 100" in law_title

    timeline = figures.timeline(view)
    bars = [t for t in timeline.data if t.type == "bar"]
    assert sum(sum(b.x) for b in bars) == view.steps_spent()
    assert f"{view.steps_spent():,} of 8,000 steps" in timeline.layout.title.text
    probed, continued = (b for b in bars if b.name == "pruned")
    assert list(probed.y) == ["trial 5", "trial 7"]
    assert (list(probed.x), list(continued.x)) == ([99, 100], [1, 400])  # trial 7: probe, then on

    calibration = figures.calibration(view)
    observed = calibration.data[1]
    assert list(observed.x) == pytest.approx([0.15, 0.9]) and list(observed.y) == [0.0, 1.0]

    chosen = figures.chosen_trials(view)
    assert chosen["best"].number == 0 and chosen["pruned, closest call"].number == 5
    steps = np.arange(200)
    curve = figures.curves(chosen, {0: {"train_loss": (steps, np.exp(-steps / 50.0))}})
    assert [t.name for t in curve.data] == ["best: trial 0 (grokked)"]
    assert "grok (0)" in [a.text for a in curve.layout.annotations][-1] or any(
        "grok (0)" in a.text for a in curve.layout.annotations
    )


def test_empty_studies_get_figures_that_say_why() -> None:
    view = StudyView("s", "maximize", 100, 1000, [])
    for figure in (
        figures.heatmaps(view),
        figures.timeline(view),
        figures.grok_time(view),
        figures.calibration(view),
    ):
        assert figure.layout.annotations and not figure.data


# -- report -----------------------------------------------------------------------------


def test_the_report_is_one_offline_file_with_every_figure(swept: SweepPlan, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = subprocess.run(
        [*GROKFORECAST, "report", NAME, "--storage", swept.storage_url, "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert not re.search(r"<script[^>]+src=", html)  # nothing to fetch: plotly.js is inline
    assert html.count("Plotly.newPlot(") == 5
    for figure_id in FIGURE_IDS:
        assert f'id="{figure_id}"' in html
    assert html.count("<tr>") == 1 + 6  # the trials table


def test_to_optuna_dashboard_saves_the_figures_and_a_note_per_pruned_trial(swept: SweepPlan) -> None:
    from optuna_dashboard import get_note
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # what its web app reads

    done = subprocess.run(
        [
            *GROKFORECAST,
            "report",
            NAME,
            "--storage",
            swept.storage_url,
            "-o",
            "/dev/null",
            "--to-optuna-dashboard",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "7 figures and 3 pruning notes" in done.stdout
    study = optuna.load_study(study_name=NAME, storage=swept.storage_url)
    saved = get_plotly_graph_objects(study._storage.get_study_system_attrs(study._study_id))
    bands = [f"heatmaps-{band}" for band in (1, 2, 3)]  # one per data fraction: each fits the frame
    assert set(saved) == {f"grokforecast-{name}" for name in [*FIGURE_IDS[1:], *bands]}
    for figure_id, graph in saved.items():
        layout = json.loads(graph)["layout"]
        assert layout["height"] <= FRAME_HEIGHT, figure_id  # optuna-dashboard cuts what is taller
        if figure_id.startswith("grokforecast-heatmaps"):
            assert layout["xaxis"].get("exponentformat") == "power" or "ticktext" in layout["xaxis"]
    for trial in study.trials:
        note = get_note(optuna.Trial(study, trial._trial_id))
        if trial.state is TrialState.PRUNED:
            assert note.startswith(f"## Trial {trial.number}: pruned") and "P(grok)" in note
        else:
            assert note == ""


# -- dashboard --------------------------------------------------------------------------


def test_the_dashboard_serves_studies_trials_and_live_updates(swept: SweepPlan) -> None:
    client = TestClient(create_app(swept.storage_url), base_url=LOCAL)
    listing = client.get("/")
    assert listing.status_code == 200 and f"/study/{NAME}" in listing.text

    study_page = client.get(f"/study/{NAME}")
    assert study_page.status_code == 200
    assert study_page.text.count("Plotly.newPlot(") == 5 and "/static/plotly.min.js" in study_page.text
    fingerprint = re.search(r'let fingerprint = "(\w+)"', study_page.text).group(1)
    assert client.get(f"/api/study/{NAME}", params={"since": fingerprint}).status_code == 204

    # A new trial (here: queued) changes what the page shows; the API sends the redraw.
    optuna.load_study(study_name=NAME, storage=swept.storage_url).enqueue_trial(
        {"lr": 2e-3, "weight_decay": 0.5, "data_fraction": 0.5}
    )
    update = client.get(f"/api/study/{NAME}", params={"since": fingerprint})
    assert update.status_code == 200
    body = update.json()
    assert body["fingerprint"] != fingerprint and "running" in body["summary"]
    assert set(body["figures"]) == set(FIGURE_IDS)

    trial_page = client.get(f"/study/{NAME}/trial/1")
    assert trial_page.status_code == 200
    assert "P(grok)" in trial_page.text and "log_activity" in trial_page.text
    assert client.get(f"/study/{NAME}/trial/99").status_code == 404
    assert client.get("/study/nope").status_code == 404
    assert client.get("/static/plotly.min.js").text.startswith("/**")


def test_the_dashboard_shows_what_the_study_model_has_learned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'model.db'}"
    study = optuna.create_study(study_name="learning", storage=open_storage(url), direction="maximize")
    client = TestClient(create_app(url), base_url=LOCAL)
    shipped = DecisionRecord(Decision.KEEP, 60, 0.7, "threshold 0.2", forecaster="full+hyperparameters")
    learned = {"trials": 24, "scale": 1.3, "shift": -0.5, "largest_correction": 0.2}
    for number, record in enumerate(
        [shipped, replace(shipped, calibrated_on=24, study_model=learned), shipped]
    ):
        trial = study.ask()
        trial.set_user_attr(DECISION_ATTR, record.to_dict())
        study.tell(trial, 0.5)
        if number == 0:  # only the shipped forecaster has decided yet
            assert "study model: not learned yet" in client.get("/study/learning").text
    page = client.get("/study/learning").text
    assert (
        "study model: learned from 24 finished trials of the full+hyperparameters forecaster, scale 1.30, "
        "shift -0.50, largest feature correction 0.20 (as it decided trial 1)"
    ) in page


def test_the_dashboard_creates_nothing_and_names_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(GrokforecastError, match="no study database at"):
        create_app(f"sqlite:///{missing}")
    assert not missing.exists()


def test_the_dashboard_benchmark_writes_a_study_the_dashboard_reads(tmp_path: Path) -> None:
    from grokforecast.bench.dashboard_load import build_large_study, time_study_page

    url = f"sqlite:///{tmp_path / 'large.db'}"
    points = build_large_study(url, "large", n_trials=12, steps=300)
    view, engine = _view_of(url, "large")
    assert len(view.trials) == 12 and view.full_steps == 300
    stored = read_curves(engine, "large")
    assert sum(len(s) for by_series in stored.values() for s, _ in by_series.values()) == points
    page_seconds, api_seconds, size = time_study_page(url, "large", repeats=1)
    assert len(page_seconds) == len(api_seconds) == 1 and size > 10_000


def test_log_axes_read_as_powers_of_ten_or_written_out_steps() -> None:
    assert figures.log_ticks([1e-3, 3e-2]) == {"dtick": 1, "exponentformat": "power"}
    short = figures.log_ticks([120.0, 400.0])  # less than a decade: 1-2-5 steps, written out
    assert short["tickvals"] == [100.0, 200.0, 500.0] and short["ticktext"] == ["1e2", "2e2", "5e2"]
    assert figures.log_ticks([0.0, float("nan")]) == {}


def test_a_study_name_with_slashes_stays_a_name_in_files_and_links(tmp_path: Path) -> None:
    """A study made by one's own Optuna code may be called anything: exports and reports
    stay in their folder, and the dashboard finds its pages."""
    url = f"sqlite:///{tmp_path / 'names.db'}"
    study = optuna.create_study(study_name="../team/run 1", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    out = tmp_path / "out"
    exported = subprocess.run(
        [*GROKFORECAST, "export", "../team/run 1", "--storage", url, "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["_team_run_1-curves.csv", "_team_run_1-trials.csv"]
    assert not (tmp_path / "team").exists()
    client = TestClient(create_app(url), base_url=LOCAL)
    link = re.search(r"href='(/study/[^']+)'", client.get("/").text).group(1)
    assert link == "/study/..%2Fteam%2Frun%201"
    assert client.get(link).status_code == 200
    assert client.get(f"{link}/trial/1").status_code == 200


def test_the_dashboard_answers_only_its_own_host_with_confining_headers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    study = optuna.create_study(study_name="guarded", storage=url)

    def objective(trial: optuna.Trial) -> float:
        # A user's objective may store anything: a grok step that is text, a decision that is a word.
        trial.set_user_attr("t4", "soon")
        trial.set_user_attr(DECISION_ATTR, "keep")
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=1)
    app = create_app(url)
    rebinding = TestClient(app, base_url="http://attacker.example:8080").get("/")
    assert rebinding.status_code == 400  # a page elsewhere cannot read it through DNS rebinding
    assert TestClient(app, base_url="http://dash.lab:8080").get("/").status_code == 400
    allowed = TestClient(create_app(url, allowed_hosts=["dash.lab"]), base_url="http://dash.lab:8080")
    assert allowed.get("/").status_code == 200
    page = TestClient(app, base_url=LOCAL).get("/study/guarded")
    assert page.status_code == 200  # the odd attributes are shown as missing, not a 500
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert TestClient(app, base_url=LOCAL).get("/study/guarded/trial/0").status_code == 200
