"""How fast the dashboard's study page loads for a large study.

A synthetic study of ``n_trials`` trials, each with dense ``steps``-step training curves,
evaluation curves every ``eval_every`` steps and a training loss reported to Optuna
every ``report_every`` steps, is written to a database the way a sweep writes it
(Optuna's tables, the decision record, the curves table in segments). The study page and
its refresh API are then requested through the app, and the times reported: what a user
waits for before the browser starts drawing.
"""

from __future__ import annotations

import time

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from grokforecast.sweep.storage import open_storage, write_curve_segment
from grokforecast.vocabulary import DECISION_ATTR, SPEC_ATTR

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "weight_decay": FloatDistribution(1e-2, 10.0, log=True),
    "data_fraction": FloatDistribution(0.1, 0.9),
}


def build_large_study(
    url: str,
    name: str,
    n_trials: int,
    steps: int,
    eval_every: int = 10,
    report_every: int = 50,
    seed: int = 0,
) -> int:
    """Write the synthetic study; returns the number of curve points stored."""
    rng = np.random.default_rng(seed)
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    probe = steps // 10
    study.set_user_attr(SPEC_ATTR, _study_file(name, n_trials, probe, steps))
    points = 0
    trials = []
    for number in range(n_trials):
        params = {
            name: float(dist.low * (dist.high / dist.low) ** rng.random())
            if dist.log
            else float(rng.uniform(dist.low, dist.high))
            for name, dist in DISTRIBUTIONS.items()
        }
        kept = rng.random() < 0.4
        trained = steps if kept else probe
        dense = np.arange(trained)
        train_loss = np.exp(-dense / (0.2 * steps)) * (1 + 0.2 * np.sin(dense / 7.0)) + 1e-3
        evals = np.arange(0, trained, eval_every)
        val_acc = 1 / (1 + np.exp(-(evals - 0.6 * steps) / (0.05 * steps))) if kept else np.zeros(len(evals))
        segment = {
            "train_loss": (dense, train_loss),
            "train_acc": (dense, np.minimum(1.0, dense / (0.1 * steps))),
            "val_loss": (evals, 5 - 4 * val_acc),
            "val_acc": (evals, val_acc),
            "weight_norm": (evals, 60 - 10 * evals / steps),
        }
        write_curve_segment(storage.engine, name, number, segment)
        points += sum(len(s) for s, _ in segment.values())
        grokked = kept and bool(val_acc[-1] >= 0.95)
        probability = float(rng.uniform(0.5, 1.0) if kept else rng.uniform(0.0, 0.5))
        decision = "keep" if kept else "prune"
        features = {"log_activity": float(rng.normal(-3, 0.5)), "val_loss_last": float(rng.normal())}
        trials.append(
            create_trial(
                state=TrialState.COMPLETE if kept else TrialState.PRUNED,
                value=float(val_acc[-1]) if kept else None,
                params=params,
                distributions=DISTRIBUTIONS,
                intermediate_values={int(s): float(train_loss[s]) for s in range(0, trained, report_every)},
                user_attrs={
                    "steps_trained": trained,
                    "grokked": grokked,
                    "t4": int(0.65 * steps) if grokked else None,
                    "final_val_acc": float(val_acc[-1]),
                    DECISION_ATTR: {
                        "decision": decision,
                        "step": probe - 1,
                        "probability": probability,
                        "reason": f"{decision} at step {probe - 1}: P(grok) = {probability:.3f}",
                        "main_features": features,
                        "features": features,
                    },
                },
            )
        )
    study.add_trials(trials)
    return points


def time_study_page(url: str, name: str, repeats: int = 5) -> tuple[list[float], list[float], int]:
    """Seconds to serve the study page and its refresh (a changed study), ``repeats`` times."""
    from starlette.testclient import TestClient

    from grokforecast.viz.dashboard import create_app

    client = TestClient(create_app(url), base_url="http://127.0.0.1:8080")  # a loopback Host
    page_seconds, api_seconds, size = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(f"/study/{name}")
        page_seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        size = len(response.content)
        started = time.perf_counter()
        client.get(f"/api/study/{name}", params={"since": "changed"}).raise_for_status()
        api_seconds.append(time.perf_counter() - started)
    return page_seconds, api_seconds, size


def time_trial_reads(url: str, name: str, repeats: int = 5) -> tuple[list[float], list[float]]:
    """Seconds to read the study's trials column-wise (the page) and through Optuna (the baseline).

    Optuna's ``get_trials`` also loads every intermediate value, which no page shows.
    """
    from grokforecast.viz.study_data import load_study_view, trial_view

    storage = open_storage(url, read_only=True)
    columns, through_optuna = [], []
    for _ in range(repeats):
        study = optuna.load_study(study_name=name, storage=storage)  # a fresh trial cache each time
        started = time.perf_counter()
        load_study_view(study)
        columns.append(time.perf_counter() - started)
        study = optuna.load_study(study_name=name, storage=storage)
        started = time.perf_counter()
        [trial_view(t) for t in study.get_trials(deepcopy=False)]
        through_optuna.append(time.perf_counter() - started)
    return columns, through_optuna


def _study_file(name: str, n_trials: int, probe: int, steps: int) -> str:
    """A study file for the synthetic study, as a sweep stores it (its search space is
    :data:`DISTRIBUTIONS`)."""
    search = "\n".join(
        f"{param} = {{ low = {dist.low}, high = {dist.high}, log = {str(dist.log).lower()} }}"
        for param, dist in DISTRIBUTIONS.items()
    )
    return (
        f'name = "{name}"\nn_trials = {n_trials}\n\n[search]\n{search}\n\n'
        f"[budget]\nprobe_steps = {probe}\nfull_steps = {steps}\n"
    )
