"""The one error type every reader raises on bad input."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not match the format its reader expects.

    The message always names the file, the place in it (line, record or member) and what is wrong,
    e.g. ``data/gad/train.tsv:17: expected 2 tab-separated columns, found 1``.

    Args:
        path: The offending file (or archive member, written ``archive.zip!member``).
        location: Where in the file: ``"line 17"``, ``"record 3 (id=123)"``, ... ; may be empty.
        problem: What is wrong and, where it helps, what was expected.
    """

    def __init__(self, path: str | Path, location: str | int | None, problem: str):
        self.path = str(path)
        self.location = "" if location is None else (f"line {location}" if isinstance(location, int) else location)
        self.problem = problem
        where = f"{self.path}: {self.location}" if self.location else self.path
        super().__init__(f"{where}: {problem}")


class TaskDeclarationError(ValueError):
    """A task declaration (task-set YAML entry, inline task list) is wrong: a typo key, a bad value, an
    unknown task. The message names where it was declared, e.g. ``tasks.yaml: tasks[2]: unknown key(s)``."""


class UnknownTaskError(TaskDeclarationError, KeyError):
    """A task name that is neither in MANIFEST.yaml nor declared (still a ``KeyError`` for lookups)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class TaskSetNotFoundError(TaskDeclarationError, FileNotFoundError):
    """A task-set YAML path that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0])
