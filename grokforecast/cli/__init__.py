"""The ``grokforecast`` command: thin wrappers over the library, one file per command.

Errors a user can cause surface as one line (``error: ...``) with exit code 2, never a
traceback; exit code 1 is kept for "the job ran but did not succeed" (a diverged run).
"""

from __future__ import annotations

import click

from grokforecast import __version__
from grokforecast.cli.errors import GroupWithCleanErrors


@click.group(cls=GroupWithCleanErrors)
@click.version_option(__version__, prog_name="grokforecast")
def main() -> None:
    """Sweep hyperparameters of models that grok; forecast grokking early, prune the rest."""


def _register() -> None:
    from grokforecast.cli import bench, corpus, forecaster, inside, status, sweep, train, viz

    main.add_command(sweep.sweep)
    main.add_command(sweep.resume)
    main.add_command(sweep.worker)
    main.add_command(status.status)
    main.add_command(status.studies)
    main.add_command(status.export)
    main.add_command(viz.report)
    main.add_command(viz.dashboard)
    main.add_command(inside.inspect_trial)
    main.add_command(train.train)
    main.add_command(corpus.corpus)
    main.add_command(forecaster.forecaster)
    main.add_command(bench.bench)


_register()
