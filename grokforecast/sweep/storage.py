"""The study database: Optuna's RDB storage plus grokforecast's table of dense curves.

One SQLAlchemy URL names it. SQLite (the default) is switched to WAL journaling with
``synchronous=NORMAL``: readers (the progress bar, a dashboard) no longer block the
writers, and a commit costs about a millisecond instead of a full fsync. PostgreSQL
(``postgresql+psycopg://...``) serves clusters.

Optuna's tables hold studies, trials, parameters, states and the strided training loss
that the pruner reads. The dense curves of every trial (every step's training loss and
accuracy, every evaluation's validation metrics and weight norm) go to the table
``grokforecast_curves``, one row per trial, series and flushed segment, the values packed
as little-endian float32 bytes: a 10,000-step trial is a handful of rows, written in
a few transactions, not one row per step.
"""

from __future__ import annotations

import datetime
import errno
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.engine import make_url

from grokforecast.errors import GrokforecastError

metadata = sa.MetaData()
#: Packed curve segments; MySQL's and MariaDB's plain BLOB holds only 64 KiB.
BLOB = sa.LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb")

curves_table = sa.Table(
    "grokforecast_curves",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("series", sa.String(32), nullable=False),
    sa.Column("first_step", sa.Integer, nullable=False),
    sa.Column("steps", BLOB, nullable=False),
    sa.Column("values", BLOB, nullable=False),
    sa.UniqueConstraint("study_name", "trial_number", "series", "first_step", name="uq_grokforecast_curves"),
    sa.Index("ix_grokforecast_curves_trial", "study_name", "trial_number"),
)

Segment = dict[str, tuple[np.ndarray, np.ndarray]]


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (processes that change directory,
    such as Ray Tune's trials, must find the same file); other URLs unchanged."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return url  # open_storage names the problem
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def misread_absolute_path(url: str) -> str | None:
    """A warning when a relative SQLite path looks as if an absolute one was meant.

    ``sqlite:///tmp/x.db`` (three slashes) is ``tmp/x.db`` under the current directory;
    when that directory does not exist here but ``/tmp`` does, the user almost surely
    meant ``sqlite:////tmp/x.db``. None when the URL is not such a path.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or Path(database).is_absolute():
        return None
    top = Path(database).parts[0]
    if len(Path(database).parts) < 2 or Path(top).exists() or not (Path("/") / top).is_dir():
        return None
    return (
        f"storage {url} is relative to this directory ({Path(database).resolve()}); "
        f"for /{database} write sqlite:////{database} (four slashes)"
    )


class StudyStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, claiming a waiting trial in one conditional UPDATE.

    Optuna starts a WAITING trial (a retry, an enqueued trial) by reading its state with
    ``SELECT ... FOR UPDATE`` and then writing RUNNING. SQLite has no ``FOR UPDATE``: two
    workers, or two threads of a population, could both read WAITING and both run the
    trial, writing its curves twice (optuna/optuna#4002). Here the claim is
    ``UPDATE ... WHERE state = 'WAITING'``, which exactly one of them wins on every database.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state is not TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        trials = models.TrialModel.__table__
        claim = (
            sa.update(trials)
            .where(trials.c.trial_id == trial_id, trials.c.state == TrialState.WAITING)
            .values(  # naive UTC, as Optuna stores it
                state=TrialState.RUNNING,
                datetime_start=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
            )
        )
        with self.engine.begin() as connection:
            claimed = connection.execute(claim).rowcount == 1
        if not claimed:  # as Optuna answers: finished raises, running or claimed by another is False
            self.check_trial_is_updatable(trial_id, self.get_trial(trial_id).state)
        return claimed


def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The study's RDB storage, under Optuna's trial cache; None for another kind."""
    storage = getattr(study._storage, "_backend", study._storage)
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
    read_only: bool = False,
) -> StudyStorage:
    """Optuna's RDB storage for ``url`` (a :class:`StudyStorage`), with heartbeats and the
    curves table in place.

    ``read_only`` (reports, the dashboard) creates nothing: no database file, no table,
    no change of journal mode; a SQLite file that does not exist is an error.

    With ``heartbeat_interval``, a trial whose worker died (SIGKILL, power loss) is failed
    after ``grace_period`` seconds by the next worker that starts a trial, and re-queued
    with the same parameters up to ``max_retry`` times.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise GrokforecastError(
            f"storage {url!r} is not a database URL; e.g. sqlite:///runs/study.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    engine_kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
        if read_only:
            if not Path(parsed.database or "").is_file():
                raise GrokforecastError(f"no study database at {display_url(url)}; check the path")
        else:
            try:
                _prepare_sqlite(parsed.database)
            except (OSError, sqlite3.Error) as error:
                raise GrokforecastError(
                    f"cannot open storage {display_url(url)}: {error}; {_sqlite_fix(error)}"
                ) from None
    # Heartbeats and their retry callback are "experimental" in Optuna since 2.8; they
    # are what makes a killed worker's trial recoverable, so use them without the noise.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    callback = (
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        if heartbeat_interval is not None
        else None
    )
    try:
        storage = StudyStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
            skip_table_creation=read_only,
        )
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(storage.engine, "connect", _sqlite_pragmas)
            storage.engine.dispose()
        if not read_only:
            metadata.create_all(storage.engine)
    except (sa.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as error:
        raise GrokforecastError(
            f"cannot open storage {display_url(url)}: {failure_reason(error)}; check the URL, the "
            "credentials and that the server is up"
        ) from None
    return storage


def failure_reason(error: BaseException) -> str:
    """The first line of what the database driver said, under Optuna's and SQLAlchemy's
    wrappers (Optuna's own message blames "invalid data in the commit" for everything)."""
    while True:
        inner = getattr(error, "orig", None) or error.__cause__
        if inner is None or inner is error:
            break
        error = inner
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _sqlite_fix(error: OSError | sqlite3.Error) -> str:
    """What to do about a SQLite file that cannot be opened for writing: SQLite reports a
    full disk as a "disk I/O error" when even its journal cannot be created."""
    full = getattr(error, "errno", None) == errno.ENOSPC or any(
        words in str(error) for words in ("disk I/O error", "database or disk is full")
    )
    return "free space on its disk (is it full?)" if full else "check the path"


def _prepare_sqlite(database: str | None) -> None:
    if not database or database == ":memory:":
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as connection:  # WAL is a property of the file: set once
        connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_pragmas(connection: sqlite3.Connection, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _pack(values: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def write_curve_segment(engine: sa.Engine, study_name: str, trial_number: int, segment: Segment) -> None:
    """Append one flushed segment (series -> (steps, values)) of a trial, in one transaction."""
    rows = [
        {
            "study_name": study_name,
            "trial_number": trial_number,
            "series": series,
            "first_step": int(steps[0]),
            "steps": _pack(steps, "<i4"),
            "values": _pack(values, "<f4"),
        }
        for series, (steps, values) in segment.items()
        if len(steps)
    ]
    if rows:
        with engine.begin() as connection:
            connection.execute(curves_table.insert(), rows)


def delete_curves(engine: sa.Engine, study_name: str, trial_numbers: Iterable[int]) -> None:
    """Drop the stored curves of trials (a retry rewrites them from its checkpoint)."""
    numbers = list(trial_numbers)
    if numbers:
        with engine.begin() as connection:
            connection.execute(
                curves_table.delete().where(
                    curves_table.c.study_name == study_name, curves_table.c.trial_number.in_(numbers)
                )
            )


def read_curves(
    engine: sa.Engine,
    study_name: str,
    trial_numbers: Iterable[int] | None = None,
    series: Iterable[str] | None = None,
) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Curves of a study's trials: ``{trial_number: {series: (steps, values)}}``, steps sorted
    (none for a database that Optuna alone wrote, which has no curve table)."""
    if not sa.inspect(engine).has_table(curves_table.name):
        return {}
    query = sa.select(
        curves_table.c.trial_number,
        curves_table.c.series,
        curves_table.c.steps,
        curves_table.c["values"],
    ).where(curves_table.c.study_name == study_name)
    if trial_numbers is not None:
        query = query.where(curves_table.c.trial_number.in_(list(trial_numbers)))
    if series is not None:
        query = query.where(curves_table.c.series.in_(list(series)))
    query = query.order_by(curves_table.c.trial_number, curves_table.c.series, curves_table.c.first_step)
    pieces: dict[int, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    with engine.connect() as connection:
        for number, name, steps, values in connection.execute(query):
            pieces.setdefault(number, {}).setdefault(name, []).append(
                (np.frombuffer(steps, "<i4"), np.frombuffer(values, "<f4"))
            )
    return {
        number: {
            name: (np.concatenate([s for s, _ in parts]), np.concatenate([v for _, v in parts]))
            for name, parts in by_series.items()
        }
        for number, by_series in pieces.items()
    }
