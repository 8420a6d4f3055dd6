"""Does the model's state at the probe forecast grokking better than its curves do?

The views inside a trial (:mod:`grokforecast.inside.views`) see what no curve shows: how
few frequencies the embedding of a modular task uses, how sharp the loss is (its top
Hessian eigenvalue), how each layer's weight norm has moved since initialization. This
experiment asks whether any of them, taken at the probe, makes the forecast better on a
model family the forecaster never saw (leave one family out, as in
:mod:`grokforecast.bench.forecast_eval`).

Corpus records keep curves, not weights, so every usable run is trained again from its
configuration up to each probe step; training is seeded and the same on every run of the
CPU, which :func:`measure_run` checks against the recorded training loss before it
trusts a state. The quantities are cached by run id (they take a few seconds per run).

The quantities, each made comparable across families:

- ``fourier_sparsity``: share of the embedding's non-constant power in its five strongest
  frequencies (modular tasks only; another family's rows have none and are imputed
  with the training rows' mean, so the quantity then says nothing);
- ``log_sharpness_ratio``: log10 of the top Hessian eigenvalue of the training loss at
  the probe over the same at initialization (the loss's scale differs between
  cross-entropy and MSE; the ratio does not);
- ``layer_norm_min`` / ``layer_norm_max``: the least and the most any weight matrix's
  norm has moved since initialization, as a log ratio (the total norm is already a curve
  feature; these ask whether one layer leads);
- ``log_gradient_norm``: log10 of the training loss's gradient norm at the probe.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grokforecast.bench.forecast_eval import Score, out_of_fold, score_of
from grokforecast.forecast.features import FEATURE_GROUPS
from grokforecast.forecast.fitting import probe_history, usable_records
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.records import RunRecord
from grokforecast.vocabulary import CURVE_GROUPS

#: The quantities measured at the probe, and the groups they are tried in.
QUANTITIES: dict[str, tuple[str, ...]] = {
    "Fourier sparsity": ("fourier_sparsity",),
    "top Hessian eigenvalue": ("log_sharpness_ratio",),
    "per-layer norms": ("layer_norm_min", "layer_norm_max"),
    "gradient norm": ("log_gradient_norm",),
}
ALL_QUANTITIES = tuple(name for names in QUANTITIES.values() for name in names)
#: Power-iteration steps for the top eigenvalue: its log to two digits is enough here.
EIGEN_ITERATIONS = 30
#: The recorded curves keep five significant digits; a replayed run must match to this.
REPLAY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RunState:
    """One run's quantities at each probe fraction, and how well its replay matched."""

    run_id: str
    quantities: dict[str, dict[str, float]]  # {fraction (as text): {quantity: value}}
    #: Largest relative difference between the replayed and the recorded training loss.
    replay_error: float


def measure_run(record: RunRecord, fractions: Sequence[float]) -> RunState:
    """Train ``record``'s configuration again up to each probe and measure its state there."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from grokforecast.forecast.fitting import probe_step
    from grokforecast.training import TrainConfig, Trainer

    torch.set_num_threads(1)  # one process per core beats threads for these small models
    trainer = Trainer(TrainConfig.from_dict(record.config))
    quantities = {}
    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernel has no second derivative
        initial = _state(trainer, None)
        for fraction in sorted(fractions):
            trainer.run(until=probe_step(record, fraction))
            quantities[str(fraction)] = _quantities(_state(trainer, initial), initial)
    recorded = np.asarray(record.curves.train_loss[: trainer.step])
    replayed = np.asarray(trainer.curves.train_loss[: trainer.step])
    error = float(np.max(np.abs(replayed - recorded) / np.maximum(np.abs(recorded), 1e-8)))
    return RunState(record.run_id, quantities, error)


@dataclass(frozen=True)
class _State:
    sharpness: float
    gradient_norm: float
    layer_norms: dict[str, float]
    fourier_sparsity: float


def _state(trainer, initial: _State | None) -> _State:
    """What the quantities are computed from, at the trainer's current step."""
    import torch

    from grokforecast.inside.snapshot_views import representation_of
    from grokforecast.inside.views import (
        flat_loss,
        fourier_power,
        fourier_sparsity,
        gradient_norm,
        top_hessian_eigen,
    )
    from grokforecast.training.trainer import loss_of

    kind = trainer.loss_kind
    loss, theta = flat_loss(
        trainer.model, trainer.train_inputs, trainer.train_targets, lambda y, t: loss_of(y, t, kind)
    )
    eigenvalue, _ = top_hessian_eigen(loss, theta, iterations=EIGEN_ITERATIONS)
    representation, points, _ = representation_of(trainer)
    modular = representation == "token embedding" and trainer.config.workload.startswith("modular")
    return _State(
        sharpness=abs(eigenvalue),
        gradient_norm=gradient_norm(loss, theta),
        layer_norms={
            name: float(torch.linalg.vector_norm(p.detach()))
            for name, p in trainer.model.named_parameters()
            if p.ndim >= 2
        },
        fourier_sparsity=fourier_sparsity(fourier_power(points)) if modular else math.nan,
    )


def _quantities(state: _State, initial: _State) -> dict[str, float]:
    moved = [
        math.log10(state.layer_norms[name] / norm) for name, norm in initial.layer_norms.items() if norm > 0
    ]
    return {
        "fourier_sparsity": state.fourier_sparsity,
        "log_sharpness_ratio": math.log10(max(state.sharpness, 1e-12) / max(initial.sharpness, 1e-12)),
        "layer_norm_min": min(moved),
        "layer_norm_max": max(moved),
        "log_gradient_norm": math.log10(max(state.gradient_norm, 1e-12)),
    }


def measure_corpus(
    records: Sequence[RunRecord], fractions: Sequence[float], cache: Path, workers: int = 2
) -> dict[str, RunState]:
    """Every record's state at each probe, from ``cache`` where it is there, measured on
    ``workers`` processes where not; the cache is rewritten as runs finish."""
    known = _read_cache(cache)
    wanted = {str(f) for f in fractions}
    todo = [r for r in records if r.run_id not in known or not wanted <= set(known[r.run_id].quantities)]
    for done, state in enumerate(_measured(todo, fractions, workers), 1):
        known[state.run_id] = state
        if done % 20 == 0 or done == len(todo):
            _write_cache(cache, known)
    return {r.run_id: known[r.run_id] for r in records}


def _measured(records: Sequence[RunRecord], fractions: Sequence[float], workers: int) -> Iterator[RunState]:
    if workers <= 1 or len(records) <= 1:
        yield from (measure_run(record, fractions) for record in records)
        return
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(measure_run, records, [fractions] * len(records))


def _read_cache(path: Path) -> dict[str, RunState]:
    try:
        return {key: RunState(**value) for key, value in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}  # none yet, or from another version: measured again


def _write_cache(path: Path, states: dict[str, RunState]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({key: vars(state) for key, state in states.items()}))
    partial.replace(path)


#: The forecasters the quantities are added to: the curves alone (what an Optuna project
#: gets), and the curves with the run's hyperparameters.
BASES: dict[str, tuple[str, ...]] = {
    "full": CURVE_GROUPS,
    "full+hyperparameters": tuple(FEATURE_GROUPS),
}
#: What is added to a base: nothing (the baseline, same run), each quantity, all of them.
ADDITIONS: dict[str, tuple[str, ...]] = {"nothing": (), **QUANTITIES, "all": ALL_QUANTITIES}


def evaluate(
    records: Sequence[RunRecord], states: dict[str, RunState], fractions: Sequence[float]
) -> list[Score]:
    """Leave-one-family-out scores of every base with every addition, per corpus; a
    score's ``variant`` is ``"<base> + <addition>"``."""
    records = usable_records(records)
    labels = np.array([r.grokked for r in records], dtype=int)
    families = np.array([r.family for r in records])
    corpora = np.array([r.corpus for r in records])
    folds = [np.flatnonzero(families == family) for family in sorted(set(families))]
    scores = []
    for fraction in fractions:
        everything = GrokForecaster(tuple(FEATURE_GROUPS))
        curves = everything.feature_matrix([probe_history(r, fraction) for r in records])
        measured = np.array(
            [[states[r.run_id].quantities[str(fraction)][q] for q in ALL_QUANTITIES] for r in records]
        )
        for base, groups in BASES.items():
            columns = [everything.features.index(f) for f in GrokForecaster(groups).features]
            for addition, quantities in ADDITIONS.items():
                added = [ALL_QUANTITIES.index(q) for q in quantities]
                matrix = np.hstack([curves[:, columns], measured[:, added]])
                p = out_of_fold(
                    {fraction: matrix}, labels, folds, {"groups": groups}, families, corpora, (fraction,)
                )[fraction]
                for corpus in sorted(set(corpora)):
                    mask = corpora == corpus
                    if len(set(labels[mask])) == 2:
                        scores.append(
                            score_of(
                                f"{base} + {addition}",
                                "family",
                                corpus,
                                fraction,
                                labels[mask],
                                p[mask],
                                max_fpr=0.1,
                            )
                        )
    return scores


def family_table(scores: Sequence[Score], records: Sequence[RunRecord]) -> str:
    """Per base and probe: each addition's held-out AUC by family (the mean over the
    family's corpora), its mean over families and its change against adding nothing."""
    family_of = {r.corpus: r.family for r in records}
    families = sorted({family_of[s.workload] for s in scores})
    lines = []
    for base in BASES:
        for fraction in sorted({s.probe_fraction for s in scores}):
            lines += [
                f"\n**{base}, probe at {100 * fraction:g} % of the run** (held-out ROC AUC)\n",
                "| added | " + " | ".join(families) + " | mean | change |",
                "| --- " * (len(families) + 3) + "|",
            ]
            baseline = None
            for addition in ADDITIONS:
                chosen = [
                    s for s in scores if s.variant == f"{base} + {addition}" and s.probe_fraction == fraction
                ]
                by_family = [
                    float(np.mean([s.auc for s in chosen if family_of[s.workload] == family]))
                    for family in families
                ]
                mean = float(np.mean(by_family))
                baseline = mean if baseline is None else baseline
                lines.append(
                    f"| {addition} | "
                    + " | ".join(f"{auc:.3f}" for auc in by_family)
                    + f" | {mean:.3f} | {mean - baseline:+.3f} |"
                )
    return "\n".join(lines)
