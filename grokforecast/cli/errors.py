"""Turn errors a user caused into one line on stderr and exit code 2."""

from __future__ import annotations

from typing import Any

import click

from grokforecast.errors import GrokforecastError

EXIT_USAGE = 2


class GroupWithCleanErrors(click.Group):
    """A click group whose commands report :class:`GrokforecastError` as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GrokforecastError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_USAGE)
