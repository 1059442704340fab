"""The library's one exception type for bad input, and its kinds.

Every input a user gives that cannot be used (a missing or unreadable file, a checkpoint
that does not fit the config, a config field with a wrong name or value, a video that
cannot be decoded) raises an `InputError` whose first line names the file or the field
and says what was expected. Catch `mraa_jax.InputError` to handle them all; anything
else that escapes is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """An input cannot be used; the message names the file or field and what was expected."""


class ConfigError(InputError):
    """A config has a missing, unknown or invalid field (the message names the field)."""


class CheckpointError(InputError):
    """A checkpoint cannot be read, or does not fit the config (the message lists every mismatch)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (its type's name if it has none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
