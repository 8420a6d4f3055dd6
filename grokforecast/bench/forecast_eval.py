"""How well the forecaster predicts grokking on the corpus, on runs it did not see.

Two held-out protocols, both out-of-fold:

- ``cells``: grouped k-fold over grid cells (all seeds of one lr / wd / r cell are held
  out together), training on every workload; scored per workload. Which cells share a
  fold moves one split's AUC by several hundredths on corpora of 36-60 runs, so the
  split is repeated with different shuffles and the scores averaged, with the range of
  the AUC kept to show that spread.
- ``family``: leave one model family out (every corpus of its workload), train on the
  other families, score each corpus of the one left out. A user's first study is on a
  model the shipped forecaster never saw: this is the protocol that measures that.

Each variant (a set of features) is scored by ROC AUC, recall at a fixed false-positive
rate, Brier score and expected calibration error, at several probe lengths given as
fractions of the full run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grokforecast.forecast.features import FEATURE_GROUPS, HYPERPARAMETER_FEATURE_INPUTS
from grokforecast.forecast.fitting import (
    DEFAULT_PROBE_FRACTIONS,
    fit_at_probes,
    probe_history,
    usable_records,
)
from grokforecast.forecast.forecaster import SIGNATURE_FEATURES, GrokForecaster
from grokforecast.records import RunRecord
from grokforecast.vocabulary import CURVE_GROUPS, HYPERPARAMETERS

#: Feature sets compared; "full" is what ``GrokForecaster()`` uses by default.
VARIANTS: dict[str, dict] = {
    "signature (paper)": {"groups": ("train_loss",), "features": SIGNATURE_FEATURES},
    "train_loss": {"groups": ("train_loss",)},
    "val_loss": {"groups": ("val_loss",)},
    "val_acc": {"groups": ("val_acc",)},
    "full": {"groups": CURVE_GROUPS},
    "full+hyperparameters": {"groups": tuple(FEATURE_GROUPS)},
    # What training loops commonly log (no weight norm; or no training accuracy either).
    "train_loss+train_acc+val_loss+val_acc": {"groups": ("train_loss", "train_acc", "val_loss", "val_acc")},
    "train_loss+train_acc+val_loss+val_acc+hyperparameters": {
        "groups": ("train_loss", "train_acc", "val_loss", "val_acc", "hyperparameters")
    },
    "train_loss+val_loss+val_acc": {"groups": ("train_loss", "val_loss", "val_acc")},
    "train_loss+val_loss+val_acc+hyperparameters": {
        "groups": ("train_loss", "val_loss", "val_acc", "hyperparameters")
    },
    "val_loss+hyperparameters": {"groups": ("val_loss", "hyperparameters")},
}


@dataclass(frozen=True)
class Score:
    variant: str
    protocol: str
    workload: str
    probe_fraction: float
    n: int
    positives: int
    auc: float
    recall_at_fpr: float
    brier: float
    ece: float
    #: Lowest and highest AUC over the repeated splits (both ``auc`` for one split).
    auc_range: tuple[float, float]


def average(scores: Sequence[Score]) -> Score:
    """The mean of one workload's scores over repeated splits, with the AUC's range."""
    aucs = [s.auc for s in scores]
    return dataclasses.replace(
        scores[0],
        auc=float(np.mean(aucs)),
        recall_at_fpr=float(np.mean([s.recall_at_fpr for s in scores])),
        brier=float(np.mean([s.brier for s in scores])),
        ece=float(np.mean([s.ece for s in scores])),
        auc_range=(min(aucs), max(aucs)),
    )


def cell_key(record: RunRecord) -> str:
    return f"{record.corpus}|" + "|".join(
        f"{k}={v}" for k, v in sorted(record.config.items()) if k not in ("seed", "device")
    )


def score_of(
    variant: str,
    protocol: str,
    workload: str,
    fraction: float,
    labels: np.ndarray,
    p: np.ndarray,
    max_fpr: float,
) -> Score:
    from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, p)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(p[bins == b].mean() - labels[bins == b].mean()) * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    auc = float(roc_auc_score(labels, p))
    return Score(
        variant,
        protocol,
        workload,
        fraction,
        len(labels),
        int(labels.sum()),
        auc,
        float(tpr[fpr <= max_fpr].max()),
        float(brier_score_loss(labels, p)),
        float(ece),
        (auc, auc),
    )


def out_of_fold(
    matrices: Mapping[float, np.ndarray],
    labels: np.ndarray,
    folds: Sequence[np.ndarray],
    variant: dict,
    families: np.ndarray,
    corpora: np.ndarray,
    fitted_at: Sequence[float] = DEFAULT_PROBE_FRACTIONS,
    scored: Mapping[float, np.ndarray] | None = None,
) -> dict[float, np.ndarray]:
    """Predictions at each probe fraction of ``matrices`` for each held-out fold, from a
    forecaster fitted on the rest as the shipped one is (:func:`fit_at_probes`: on their
    histories at the fractions ``fitted_at`` together, each weight held to the direction
    the fold's families agree on). ``scored``: other features of the same runs to predict
    from instead (as a user's loop would have measured them), by probe fraction.

    A feature some runs do not have (NaN: the embedding spectrum of a model without an
    embedding) is filled with the training rows' mean, where it moves no forecast.
    """
    forecaster = GrokForecaster(**variant)
    predicted_from = matrices if scored is None else scored
    p = {fraction: np.full(len(labels), np.nan) for fraction in predicted_from}
    for held_out in folds:
        train = np.setdiff1d(np.arange(len(labels)), held_out)
        fill = np.nanmean(np.vstack([matrices[f][train] for f in fitted_at]), axis=0)
        fitted_on = {f: np.where(np.isnan(matrices[f]), fill, matrices[f])[train] for f in fitted_at}
        fit_at_probes(forecaster, fitted_on, labels[train], families[train], corpora[train])
        for fraction, matrix in predicted_from.items():
            filled = np.where(np.isnan(matrix), fill, matrix)
            p[fraction][held_out] = forecaster.predict_proba_features(filled[held_out])
    return p


def evaluate(
    records: Sequence[RunRecord],
    fractions: Sequence[float] = DEFAULT_PROBE_FRACTIONS,
    n_folds: int = 5,
    max_fpr: float = 0.1,
    seed: int = 0,
    repeats: int = 5,
    evaluations: int | None = None,
    swept: Sequence[str] | None = None,
) -> list[Score]:
    """Score every variant under both protocols at every probe fraction.

    The ``cells`` protocol is repeated over ``repeats`` shuffles of its folds (seeds
    ``seed``, ``seed + 1``, ...) and averaged; leaving a workload out has one split only.
    With ``evaluations``, the runs scored show only that many evaluations by each probe
    (:meth:`History.evaluated_only`), as a loop evaluating once an epoch would; the
    forecaster is fitted on the recorded evaluations, as the shipped one is.

    With ``swept`` (a set of :data:`~grokforecast.vocabulary.HYPERPARAMETER_SETS`), each
    corpus is scored as the studies that sweep only those hyperparameters on it: its runs
    cut into groups that share the other hyperparameters (a study on a fixed data set, say),
    each group's score the forecast's within it (groups of one outcome left out), the
    corpus's the mean over its groups; the forecaster is not told the fixed ones, and reads
    their features at its fitted corpus's mean, as it does for a trial that does not give them.
    """
    from sklearn.model_selection import GroupKFold

    records = usable_records(records)
    labels = np.array([r.grokked for r in records], dtype=int)
    workloads = np.array([r.corpus for r in records])
    families = np.array([r.family for r in records])
    cells = np.array([cell_key(r) for r in records])
    splits = {
        "cells": [
            [
                held
                for _, held in GroupKFold(n_folds, shuffle=True, random_state=seed + repeat).split(
                    labels, labels, cells
                )
            ]
            for repeat in range(repeats)
        ],
        "family": [[np.flatnonzero(families == f) for f in sorted(set(families))]],
    }
    full = GrokForecaster(tuple(FEATURE_GROUPS))
    matrices = {
        fraction: full.feature_matrix([probe_history(r, fraction) for r in records])
        for fraction in sorted({*DEFAULT_PROBE_FRACTIONS, *fractions})
    }
    scored = None
    if evaluations is not None:
        scored = {
            fraction: full.feature_matrix(
                [probe_history(r, fraction).evaluated_only(evaluations) for r in records]
            )
            for fraction in fractions
        }
    studies = np.array([_study_of(r, swept) for r in records])
    if swept is not None:
        scored = {
            fraction: _without_fixed(full, (scored or matrices)[fraction], swept) for fraction in fractions
        }
    scores = []
    for name, variant in VARIANTS.items():
        columns = [full.features.index(f) for f in GrokForecaster(**variant).features]
        variant_matrices = {fraction: matrix[:, columns] for fraction, matrix in matrices.items()}
        variant_scored = None if scored is None else {f: matrix[:, columns] for f, matrix in scored.items()}
        for protocol, fold_sets in splits.items():
            predictions = [
                out_of_fold(
                    variant_matrices, labels, folds, variant, families, workloads, scored=variant_scored
                )
                for folds in fold_sets
            ]
            for fraction in fractions:
                for workload in sorted(set(workloads)):
                    groups = [
                        mask
                        for mask in (
                            (workloads == workload) & (studies == study) for study in sorted(set(studies))
                        )
                        if len(set(labels[mask])) == 2
                    ]
                    if groups:
                        scored_runs = np.logical_or.reduce(groups)
                        mean = average(
                            [
                                score_of(
                                    name,
                                    protocol,
                                    workload,
                                    fraction,
                                    labels[mask],
                                    p[fraction][mask],
                                    max_fpr,
                                )
                                for p in predictions
                                for mask in groups
                            ]
                        )
                        scores.append(
                            dataclasses.replace(
                                mean, n=int(scored_runs.sum()), positives=int(labels[scored_runs].sum())
                            )
                        )
    return scores


def _study_of(record: RunRecord, swept: Sequence[str] | None) -> str:
    """The study a run belongs to when studies sweep only ``swept``: its values of the
    other hyperparameters (every run in one study when ``swept`` is None)."""
    if swept is None:
        return ""
    return "|".join(f"{name}={record.config[name]}" for name in HYPERPARAMETERS if name not in swept)


def _without_fixed(forecaster: GrokForecaster, matrix: np.ndarray, swept: Sequence[str]) -> np.ndarray:
    """``matrix`` with the features of the hyperparameters outside ``swept`` unknown (NaN),
    as :func:`extract_features` gives them for a history without those."""
    fixed = {
        feature for feature, needs in HYPERPARAMETER_FEATURE_INPUTS.items() if not set(needs) <= set(swept)
    }
    return np.where([feature in fixed for feature in forecaster.features], np.nan, matrix)


def markdown_table(scores: Sequence[Score], max_fpr: float = 0.1) -> str:
    lines = [
        "| protocol | variant | workload | probe | n (grokked) | ROC AUC (range) "
        f"| recall @ FPR {max_fpr:g} | Brier | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in sorted(
        scores, key=lambda s: (s.protocol, list(VARIANTS).index(s.variant), s.workload, s.probe_fraction)
    ):
        lines.append(
            f"| {s.protocol} | {s.variant} | {s.workload} | {100 * s.probe_fraction:g} % | "
            f"{s.n} ({s.positives}) | {_auc_text(s)} | {s.recall_at_fpr:.2f} | {s.brier:.3f} | {s.ece:.3f} |"
        )
    return "\n".join(lines)


def _auc_text(score: Score) -> str:
    low, high = score.auc_range
    return f"{score.auc:.3f}" if low == high else f"{score.auc:.3f} ({low:.2f}-{high:.2f})"
