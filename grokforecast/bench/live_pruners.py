"""The same study with the HjorthPruner, Optuna's MedianPruner and no pruning, trained live.

Each variant is the study file with its ``[pruner]`` table changed (``kind = "median"``:
MedianPruner on validation accuracy after the probe; ``enabled = false``: no pruning),
run on a fresh SQLite database in its own directory, one after the other in one process
(one Optuna worker), and timed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

from grokforecast.errors import GrokforecastError

if TYPE_CHECKING:
    from grokforecast.bench.backends import BackendRun

#: Variants compared, as the ``[pruner]`` keys each one sets.
PRUNERS: dict[str, dict[str, str]] = {
    "HjorthPruner": {},
    "MedianPruner": {"kind": '"median"'},
    "no pruning": {"enabled": "false"},
}


def with_pruner(text: str, settings: dict[str, str]) -> str:
    """``text`` (a study file) with ``settings`` added to its ``[pruner]`` table.

    >>> with_pruner('name = "s"\\n[pruner]\\nthreshold = 0.5\\n', {"kind": '"median"'})
    'name = "s"\\n[pruner]\\nkind = "median"\\nthreshold = 0.5\\n'
    >>> with_pruner('name = "s"\\n', {"enabled": "false"})
    'name = "s"\\n\\n[pruner]\\nenabled = false\\n'
    """
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    header = re.search(r"^\[pruner\][ \t]*(#.*)?\n", text, flags=re.MULTILINE)
    if header is None:
        return f"{text}\n[pruner]\n{lines}" if lines else text
    body = text[header.end() :].split("\n[", 1)[0]
    for key in settings:
        if re.search(rf"^{key}\s*=", body, flags=re.MULTILINE):
            raise GrokforecastError(f"the study file sets pruner.{key} already; remove it to compare pruners")
    return text[: header.end()] + lines + text[header.end() :]


def variant_folder(parent: Path, name: str) -> Path:
    """Where ``bench pruners --keep parent`` keeps the variant ``name``: its name with
    every run of characters other than letters and digits made one ``-``.

    >>> variant_folder(Path("kept"), "no pruning").as_posix()
    'kept/no-pruning'
    """
    return parent / re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def run_pruner(study_file: Path, workdir: Path, name: str) -> BackendRun:
    """Run ``study_file`` with the pruner ``name`` of :data:`PRUNERS` inside ``workdir``."""
    from grokforecast.bench.backends import run_backend  # the sweep, not needed for the names

    variant = workdir / study_file.name
    variant.write_text(with_pruner(study_file.read_text(), PRUNERS[name]))
    return dataclasses.replace(run_backend(variant, workdir, "optuna"), backend=name)
