"""File helpers shared by all readers: every failure becomes a DataFormatError naming file + place."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from metaprompt.tasks.errors import DataFormatError


def decode(data: bytes, path: str | Path) -> str:
    """Decode UTF-8 (a BOM is dropped); bad bytes raise with their line number and byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_text(path: Path) -> str:
    """The whole file as text; missing files and non-UTF-8 bytes raise DataFormatError."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    return decode(path.read_bytes(), path)


def read_json(path: Path) -> Any:
    """Parse a JSON document; syntax errors (e.g. truncation) report line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON at column {e.colno}: {e.msg}") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON Lines file."""
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, lineno, f"invalid JSON at column {e.colno}: {e.msg}") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, lineno, f"expected a JSON object, found {type(obj).__name__}")
        yield lineno, obj


def iter_csv(
    path: Path, required: list[str] | tuple[str, ...] = (), delimiter: str = ","
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, row dict)`` of a CSV/TSV file with a header row.

    The line number is that of the row's first physical line (quoted fields may span lines).
    Missing required columns and short rows raise DataFormatError.
    """
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"missing column(s) {missing}; header has {header}")
    start = 2
    for row in reader:
        if None in row.values() and any(row.get(c) is None for c in required):
            raise DataFormatError(path, start, f"row has fewer fields than the header ({len(header)})")
        yield start, row
        start = reader.line_num + 1


def iter_xlsx(
    path: Path, required: list[str] | tuple[str, ...] = (), sheet: str | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(spreadsheet row number, row dict)`` of an XLSX sheet whose first row is a header."""
    import openpyxl  # local: only XLSX datasets need it

    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # zipfile/openpyxl raise many types for a damaged workbook
        raise DataFormatError(path, None, f"not a readable XLSX workbook ({type(e).__name__}: {e})") from None
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise DataFormatError(path, None, f"no sheet {sheet!r}; sheets are {wb.sheetnames}")
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                path, f"sheet {ws.title!r} row 1", f"missing column(s) {missing}; header has {header}"
            )
        for n, values in enumerate(rows, 2):
            if all(v is None for v in values):
                continue
            yield n, {h: ("" if v is None else str(v)) for h, v in zip(header, values)}
    finally:
        wb.close()


def require(value: str | None, path: Path, location: str | int, what: str) -> str:
    """Return ``value`` stripped, or raise if it is missing or blank (e.g. an empty target)."""
    if value is None or not str(value).strip():
        raise DataFormatError(path, location, f"empty {what}")
    return str(value).strip()


def choice(value: str, path: Path, location: str | int, what: str, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise listing them (an unknown label)."""
    if value not in choices:
        raise DataFormatError(path, location, f"unknown {what} {value!r}; expected one of {list(choices)}")
    return value


class UniqueKeys:
    """The ids read so far from one file: a repeated id raises ``duplicate <what> <id>`` at its place.

    Args:
        path: The file (named in the error).
        what: What the id is called in the file (``"pid"``, ``"index"``, ``"qid"``).
    """

    def __init__(self, path: Path, what: str = "id"):
        self.path, self.what, self.seen = path, what, set()

    def add(self, key: str, location: str | int, shown: str | None = None) -> str:
        """Record ``key`` (``shown`` stands for it in the error, e.g. without a folder prefix); returns it."""
        if key in self.seen:
            raise DataFormatError(self.path, location, f"duplicate {self.what} {shown or key!r}")
        self.seen.add(key)
        return key


def read_splits(folder: Path, files: Mapping[str, str], read_file: Callable[[Path, str], list]) -> dict[str, list]:
    """``{split: read_file(folder / file name, split)}`` over a ``split -> file name`` table."""
    return {split: read_file(Path(folder) / name, split) for split, name in files.items()}
