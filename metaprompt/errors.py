"""Errors in what a user gave (settings, adapter files), as opposed to bugs: the command line prints the
message as one line and exits 2 instead of a traceback (``metaprompt.__main__``). Bad data files and task
declarations have their own types in :mod:`metaprompt.tasks.errors`."""

from __future__ import annotations


class InputError(ValueError):
    """Something the user can fix; the message names the file or setting and what is wrong."""


class AdapterError(InputError):
    """An adapter folder that cannot be saved or loaded: non-finite values, a tensor that does not fit its
    config, a missing or foreign file. The message names the folder or file and the tensor."""


class SettingsError(InputError):
    """A run's settings that its stage rejects (checked for every run before the first one starts)."""


class AdapterNotFoundError(AdapterError, FileNotFoundError):
    """An adapter folder or one of its two files is not there (still a ``FileNotFoundError`` for callers)."""
