"""Every bad input a user can give, through the real command line, in one table.

Each row is a command a user might type with something wrong in it: a malformed study
file, an unsafe study name, a search range that leaves the valid values, a database that
is missing, mistyped, truncated, random bytes, on a closed port, behind a wrong password,
or on a full disk. Each must end with exactly one line on stderr that starts with
``error:`` and names the problem, a non-zero exit status, and every file in the working
folder, the stored study first of all, exactly as it was: nothing created, nothing lost.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from studies import GROKFORECAST, SERVER_URL_VARIABLES, study_text

#: The stored study every row must leave untouched, in ``kept.db`` of the test's folder.
KEPT = "kept"


@dataclass(frozen=True)
class BadInput:
    """A command (its arguments, built in the test's folder) and what its one line says."""

    what: str
    command: Callable[[Path, ExitStack], list[str]]
    says: str


def _study_file(folder: Path, change: tuple[str, str] = ("", "")) -> str:
    path = folder / "study.toml"
    path.write_text(study_text("bad").replace(*change, 1))
    return str(path)


def _sweep_of(change: tuple[str, str]) -> Callable[[Path, ExitStack], list[str]]:
    return lambda folder, _: ["sweep", _study_file(folder, change), "--storage", _kept_url(folder)]


def _kept_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'kept.db'}"


def _random_bytes(folder: Path) -> str:
    path = folder / "random.db"
    path.write_bytes(bytes(range(256)) * 20)
    return f"sqlite:///{path}"


def _truncated(folder: Path) -> str:
    path = folder / "cut.db"
    data = (folder / "kept.db").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return f"sqlite:///{path}"


def _wrong_password(folder: Path) -> str:
    """A real server refusing a password where one exists (MariaDB's root has none), else
    a closed port: either way the password must not be printed."""
    server = os.environ.get(SERVER_URL_VARIABLES["mariadb"])
    if server and "@" in server:
        user, rest = server.split("@", 1)
        return f"{user}:secret@{rest}"
    return "postgresql+psycopg://someone:secret@127.0.0.1:9/test"


def _full_disk(folder: Path, stack: ExitStack) -> list[str]:
    """A study on a 2 MB tmpfs that a filler file has filled (needs root to mount)."""
    disk = folder / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    stack.callback(subprocess.run, ["umount", str(disk)], check=True)
    study = _study_file(folder, ('name = "bad"', f'name = "{KEPT}"'))
    (disk / "kept.db").write_bytes((folder / "kept.db").read_bytes())
    with open(disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass  # the disk is full
    return ["resume", study, "--storage", f"sqlite:///{disk / 'kept.db'}"]


#: Storages that fail, each tried with every command that reads or writes a study.
FAILING_STORAGES: dict[str, tuple[Callable[[Path], str], str]] = {
    "closed port": (lambda _: "postgresql+psycopg://postgres@127.0.0.1:9/test", "Connection refused"),
    "random bytes": (_random_bytes, "file is not a database"),
    "truncated file": (_truncated, "malformed"),
    "missing file": (lambda folder: f"sqlite:///{folder / 'raed.db'}", "no study database at"),
    "wrong password": (_wrong_password, ":***@"),
}
STORAGE_COMMANDS: dict[str, Callable[[Path, str], list[str]]] = {
    "status": lambda _, url: ["status", KEPT, "--storage", url],
    "studies": lambda _, url: ["studies", "--storage", url],
    "export": lambda folder, url: ["export", KEPT, "--storage", url, "-o", str(folder / "out")],
    "report": lambda folder, url: ["report", KEPT, "--storage", url, "-o", str(folder / "out")],
    "dashboard": lambda _, url: ["dashboard", "--storage", url],
}


def _storage_row(storage: str, command: str) -> BadInput:
    url_of, says = FAILING_STORAGES[storage]
    build = STORAGE_COMMANDS[command]
    return BadInput(f"{command} on a {storage}", lambda folder, _: build(folder, url_of(folder)), says)


BAD_INPUTS = [
    BadInput("a study file that is not TOML", _sweep_of(("[budget]", "[budget\n")), "is not valid TOML"),
    BadInput(
        "an unknown key", _sweep_of(("n_trials = 3", "n_trials = 3\nn_trails = 4")), "did you mean n_trials?"
    ),
    BadInput("no trials", _sweep_of(("n_trials = 3", "n_trials = 0")), "n_trials"),
    BadInput(
        "a study name that climbs out of its folder",
        _sweep_of(('name = "bad"', 'name = "../x"')),
        "name: '../x' may hold only letters, digits",
    ),
    BadInput(
        "a slash in a study name", _sweep_of(('name = "bad"', 'name = "team/x"')), "'team/x' may hold only"
    ),
    BadInput(
        "a search range valid only at its midpoint",
        _sweep_of(("data_fraction = { low = 0.3, high = 0.8 }", "data_fraction = { choices = [0.6, 1.3] }")),
        "search.data_fraction reaches 1.3",
    ),
    BadInput(
        "a missing study file",
        lambda folder, _: ["resume", str(folder / "none.toml"), "--storage", _kept_url(folder)],
        "no study file",
    ),
    BadInput(
        "a sweep on a closed port",
        lambda folder, _: [
            "sweep",
            _study_file(folder),
            "--storage",
            "postgresql+psycopg://postgres@127.0.0.1:9/test",
        ],
        "Connection refused",
    ),
    BadInput("a resume on a full disk", _full_disk, "free space on its disk"),
    *(_storage_row(storage, command) for storage in FAILING_STORAGES for command in STORAGE_COMMANDS),
]


def _kept_study(folder: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=KEPT, storage=_kept_url(folder))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=20)
    study.set_user_attr("note", "stored before any bad input")
    optuna.storages.get_storage(_kept_url(folder)).remove_session()
    del study


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes; SQLite's shared-memory index is not
    content, and an empty write-ahead log is the same as none."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith("-shm"):
            data = path.read_bytes()
            if data or not path.name.endswith("-wal"):
                files[str(path.relative_to(folder))] = data
    return files


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.what for bad in BAD_INPUTS])
def test_bad_input_is_one_line_a_failure_and_changes_nothing(tmp_path: Path, bad: BadInput) -> None:
    _kept_study(tmp_path)
    with ExitStack() as stack:
        args = bad.command(tmp_path, stack)
        before = _files(tmp_path)
        result = subprocess.run(
            [*GROKFORECAST, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        after = _files(tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert bad.says in result.stderr and "secret" not in result.stderr, result.stderr
    assert after.keys() == before.keys(), "a file was created or removed"
    assert [name for name in before if before[name] != after[name]] == []
