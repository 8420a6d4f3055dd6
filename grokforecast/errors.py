"""Errors that grokforecast raises on bad input.

Every error a user can cause (a bad argument, an unknown workload, a checkpoint from
another run) derives from :class:`GrokforecastError`, so the command line turns it into
one line naming the bad value and the fix instead of a traceback.
"""


class GrokforecastError(Exception):
    """Base class of the errors whose message is meant for the user as it is."""


class ConfigError(GrokforecastError, ValueError):
    """A setting has a bad value; the message names the setting, the value and the fix."""


class CheckpointError(GrokforecastError):
    """A checkpoint cannot be used for this run (another run, another format, corrupt)."""
