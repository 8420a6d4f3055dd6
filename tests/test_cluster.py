"""The compose cluster, run for real (``make cluster-test``): images built offline, two
worker containers sharing a study on PostgreSQL, one SIGKILLed and one stopped with
SIGTERM mid-trial, both restarted, the study resumed (:mod:`grokforecast.bench.cluster`).

Skipped where no container engine runs (no docker daemon, no podman); ``make
cluster-engine`` sets podman up on a Debian machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from grokforecast.bench.cluster import engine_in_use, run_cluster
from grokforecast.errors import GrokforecastError

ROOT = Path(__file__).resolve().parents[1]
LISTINGS = {
    "container": ["ps", "-a", "--format", "{{.Names}}"],
    "volume": ["volume", "ls", "--format", "{{.Name}}"],
    "network": ["network", "ls", "--format", "{{.Name}}"],
}


@pytest.mark.slow
@pytest.mark.cluster
def test_a_cluster_sweep_survives_a_killed_and_a_stopped_worker() -> None:
    try:
        engine = engine_in_use()
    except GrokforecastError as missing:
        pytest.skip(str(missing))
    run = run_cluster(ROOT, "studies/cluster.toml", seed=0)
    report = run.study["report"]
    assert len(run.kills) == 2, run.kills
    assert report["finished"] == report["target"] and report["running"] == 0, report
    assert report["repeated"] == 0 and report["curve_faults"] == 0, report
    assert report["interrupted"] >= 2 and report["continued"] >= 1, report  # both kills landed mid-trial
    assert report["steps_retrained"] <= report["interrupted"] * report["checkpoint_every"], report
    assert run.decisions_differing == [], run.decisions_differing
    assert len(run.study["trials"]) == report["target"]
    project = f"grokforecast-test-{os.getpid()}"  # the cluster's: removed with all it made
    for kind, listing in LISTINGS.items():
        names = subprocess.run([engine, *listing], capture_output=True, text=True, check=True).stdout
        assert project not in names, f"{kind}s left behind: {names}"
