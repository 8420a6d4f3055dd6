"""The probe-state experiment: states replayed from corpus records, scored held out."""

import math
from pathlib import Path

import numpy as np
import pytest

from grokforecast.bench import probe_state
from grokforecast.bench.probe_state import (
    ALL_QUANTITIES,
    REPLAY_TOLERANCE,
    RunState,
    evaluate,
    family_table,
    measure_corpus,
    measure_run,
)
from grokforecast.corpus import load_corpus
from grokforecast.forecast.fitting import usable_records


def test_a_replayed_run_matches_its_record_and_measures_every_quantity_that_applies() -> None:
    modular, parity = load_corpus("quadratic_add97")[0], load_corpus("parity_30_3")[0]
    modular_state = measure_run(modular, (0.05, 0.1))
    assert modular_state.replay_error <= REPLAY_TOLERANCE
    assert set(modular_state.quantities) == {"0.05", "0.1"}
    assert all(math.isfinite(v) for v in modular_state.quantities["0.1"].values())
    # The probes differ: the state moved between 5 % and 10 % of the run.
    assert modular_state.quantities["0.05"] != modular_state.quantities["0.1"]

    parity_state = measure_run(parity, (0.025,))
    assert parity_state.replay_error <= REPLAY_TOLERANCE
    quantities = parity_state.quantities["0.025"]
    assert math.isnan(quantities["fourier_sparsity"])  # no embedding, no spectrum
    assert all(math.isfinite(quantities[q]) for q in ALL_QUANTITIES if q != "fourier_sparsity")


def test_measured_states_are_cached_and_not_measured_again(tmp_path: Path, monkeypatch) -> None:
    records = load_corpus("quadratic_add97")[:2]
    cache = tmp_path / "states.json"
    first = measure_corpus(records, (0.05,), cache, workers=1)

    def no_pool(*args, **kwargs):
        raise AssertionError("measured again although the cache holds every state")

    monkeypatch.setattr(probe_state, "ProcessPoolExecutor", no_pool)
    monkeypatch.setattr(probe_state, "measure_run", no_pool)
    assert measure_corpus(records, (0.05,), cache, workers=1) == first


def test_a_quantity_that_carries_the_label_raises_the_held_out_auc() -> None:
    """Planted states: one quantity is the label plus noise, another is missing for the
    models without an embedding; adding them must beat the curves alone on every family."""
    records = usable_records(load_corpus())
    noise = np.random.default_rng(0).normal(size=len(records))
    states = {}
    for record, jitter in zip(records, noise, strict=True):
        planted = dict.fromkeys(ALL_QUANTITIES, 0.0)
        planted["layer_norm_max"] = float(record.grokked) + 0.3 * jitter
        if record.family in ("digits_mlp", "sparse_parity"):
            planted["fourier_sparsity"] = math.nan
        states[record.run_id] = RunState(record.run_id, {"0.1": planted}, 0.0)

    scores = evaluate(records, states, (0.1,))
    by = {(s.variant, s.workload): s.auc for s in scores}
    for corpus in {s.workload for s in scores}:
        assert by[("full + all", corpus)] > by[("full + nothing", corpus)]
        assert by[("full + per-layer norms", corpus)] > 0.95
        # A constant adds nothing: the held-out forecast is the baseline's.
        assert by[("full + gradient norm", corpus)] == pytest.approx(by[("full + nothing", corpus)], abs=1e-9)
    table = family_table(scores, records)
    assert "| per-layer norms |" in table and "digits_mlp" in table
