"""The project's error types: each message alone says what is wrong and where.

A command's entry point (``core.io.run_main``) turns any of them into one line on stderr and exit
status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StageError(Exception):
    """A failure the user can act on: the message alone says what is wrong and where."""


class ParamsError(StageError, ValueError):
    """params.yaml is missing, unreadable or does not match the expected shape."""
