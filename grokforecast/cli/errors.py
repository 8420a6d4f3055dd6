"""Turn errors a user caused into one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Any

import click

from grokforecast.errors import GrokforecastError

EXIT_USAGE = 2


class GroupWithCleanErrors(click.Group):
    """A click group whose commands report :class:`GrokforecastError`, and a study
    database that fails mid-command (a lost connection, a full disk), as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GrokforecastError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_USAGE)
        except Exception as error:
            if not _is_storage_failure(error):
                raise
            from grokforecast.sweep.storage import failure_reason

            click.echo(
                f"error: the study database failed: {failure_reason(error)}; what it stored before "
                "is kept (a full disk? a lost connection?)",
                err=True,
            )
            ctx.exit(EXIT_USAGE)


def _is_storage_failure(error: Exception) -> bool:
    """An error of SQLAlchemy or of Optuna's storage (neither is imported to ask: an
    error of theirs means they are loaded)."""
    sqlalchemy, optuna = sys.modules.get("sqlalchemy"), sys.modules.get("optuna")
    kinds = []
    if sqlalchemy is not None:
        kinds.append(sqlalchemy.exc.SQLAlchemyError)
    if optuna is not None:
        kinds.append(optuna.exceptions.StorageInternalError)
    return isinstance(error, tuple(kinds))
