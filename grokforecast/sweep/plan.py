"""``SweepPlan``: a study file parsed once, with where its sweep runs.

Every command, every worker process and every Ray trial receives the plan, never the
file's path to read again: the study database stores the text it was made from
(:data:`~grokforecast.vocabulary.SPEC_ATTR`), and :func:`stored_spec` reads that
copy back with the same validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from grokforecast.errors import ConfigError
from grokforecast.sweep.spec import StudySpec, load_study_spec, parse_study_text
from grokforecast.sweep.storage import open_storage
from grokforecast.vocabulary import SPEC_ATTR


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

    def open_storage(self) -> optuna.storages.RDBStorage:
        heartbeat = self.spec.heartbeat
        return open_storage(
            self.storage_url, heartbeat.heartbeat_interval, heartbeat.grace_period, heartbeat.max_retry
        )


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
