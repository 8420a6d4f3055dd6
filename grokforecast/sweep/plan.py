"""``SweepPlan``: a study file parsed once, with where its sweep runs.

Every command, every worker process and every Ray trial receives the plan, never the
file's path to read again: the study database stores the text it was made from
(:data:`~grokforecast.vocabulary.SPEC_ATTR`), and :func:`stored_spec` reads that
copy back with the same validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from grokforecast.errors import ConfigError, GrokforecastError
from grokforecast.sweep.spec import StudySpec, load_study_spec, parse_study_text
from grokforecast.sweep.storage import open_storage
from grokforecast.vocabulary import SPEC_ATTR, SPEC_FILE_ATTR

#: Seconds between attempts to open a study database that is not up yet.
STORAGE_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class SweepPlan:
    """Where a sweep runs: its spec (and the text it was parsed from), its file, its
    storage URL and its checkpoints."""

    spec: StudySpec
    spec_path: Path
    storage_url: str
    spec_text: str

    @classmethod
    def load(cls, spec_path: str | Path, storage_url: str | None = None) -> SweepPlan:
        spec = load_study_spec(spec_path)
        return cls(spec, Path(spec_path), storage_url or spec.storage_url(), Path(spec_path).read_text())

    @property
    def checkpoint_dir(self) -> Path:
        if self.spec.checkpoint_dir:
            return Path(self.spec.checkpoint_dir)
        return Path("runs") / self.spec_path.stem / "checkpoints"

    @property
    def snapshot_dir(self) -> Path:
        """Where kept trials keep their snapshots: beside the checkpoints."""
        return self.checkpoint_dir.parent / "snapshots"

    def open_storage(self, wait_seconds: float = 0.0) -> optuna.storages.RDBStorage:
        """The study database, with heartbeats; tried again for up to ``wait_seconds`` while
        it cannot be opened (a cluster's workers start with its database server), then the
        last failure is raised."""
        beats = self.spec.heartbeat
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return open_storage(
                    self.storage_url, beats.heartbeat_interval, beats.grace_period, beats.max_retry
                )
            except GrokforecastError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(STORAGE_RETRY_SECONDS)


def stored_spec(study: optuna.Study) -> StudySpec | None:
    """The spec a grokforecast study was made from, read back from the study database;
    None for a study grokforecast did not make (or whose stored file no longer validates)."""
    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        return None
    try:
        return parse_study_text(text, f"the study file stored with study {study.study_name!r}")
    except ConfigError:
        return None


def stored_plan(study: optuna.Study, storage_url: str) -> SweepPlan | None:
    """The plan of a grokforecast study as its database recorded it (the study file's text
    and name), for the commands given a study name: where its checkpoints and snapshots
    are, relative to the folder the sweep ran in. None for a study grokforecast did not make."""
    spec = stored_spec(study)
    file_name = study.user_attrs.get(SPEC_FILE_ATTR)
    if spec is None or not isinstance(file_name, str):
        return None
    return SweepPlan(spec, Path(Path(file_name).name), storage_url, study.user_attrs[SPEC_ATTR])
