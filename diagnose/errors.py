"""Errors that reach the user as one line and exit status 2.

Library code raises :class:`DiagnoseError` (or a subclass) for anything the user
can fix: a missing file, a bad ``--set`` value, an impossible size. The CLI catches
it, prints ``error: <message>`` on one line and exits with status 2. The message
names the problem *and* the fix.
"""


class DiagnoseError(Exception):
    """A problem with the user's input, reported as one line naming the fix."""


class CorpusError(DiagnoseError):
    """A corpus file or directory cannot be used."""


class ConfigError(DiagnoseError):
    """A configuration key or value is invalid."""


class RecordError(DiagnoseError):
    """A run record or study file is missing or damaged (the message names the file)."""
