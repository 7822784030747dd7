"""Malformed-input helpers for the reader tests: copy a fixture, break one file, check the error."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from metaprompt.tasks.errors import DataFormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "readers"


def fixture_copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of the fixture folder ``name`` (malformed cases edit one file of it)."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def edit(path: Path, old: str | bytes, new: str | bytes, count: int = 1) -> None:
    """Replace the first ``count`` occurrences of ``old`` in ``path`` (which must contain it)."""
    data = path.read_bytes()
    old_b = old.encode() if isinstance(old, str) else old
    new_b = new.encode() if isinstance(new, str) else new
    assert old_b in data, f"{old!r} not in {path}"
    path.write_bytes(data.replace(old_b, new_b, count))


def raises_naming(read: Callable[[], object], *parts: str) -> str:
    """``read()`` must raise :class:`DataFormatError` whose message holds every part (file, place,
    problem); returns the message."""
    with pytest.raises(DataFormatError) as err:
        read()
    msg = str(err.value)
    missing = [p for p in parts if p not in msg]
    assert not missing, f"{missing} not in: {msg}"
    return msg


def read_broken(folder: Path, dataset: str, file: str, mutate: Callable[[Path], None], *parts: str) -> str:
    """Apply ``mutate`` to ``folder / file``, then reading ``dataset`` from ``folder`` must raise naming
    the file and every part (place, problem); returns the message."""
    from metaprompt.tasks.readers import get_reader

    mutate(folder / file)
    return raises_naming(lambda: get_reader(dataset)(folder), Path(file).name, *parts)


def manifest_entries(data: Path) -> dict[str, dict]:
    """``dataset id -> MANIFEST.yaml entry`` of the real data root ``data``."""
    import yaml

    return {d["id"]: d for d in yaml.safe_load((data / "MANIFEST.yaml").read_text())["datasets"]}
