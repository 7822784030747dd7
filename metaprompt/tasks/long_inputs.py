"""The ``long_inputs`` key of a task declaration, checked where it is declared.

Syntax (what each mode does: ``metaprompt.data.long_inputs``)::

    long_inputs: {mode: window, stride: 128}               # qa, ner, re; optional window: 384 (tokens)
    long_inputs: {mode: head_tail, head: 384, tail: 128}   # summarization; optional marker: "\\n[...]\\n"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metaprompt.tasks.errors import TaskDeclarationError

MODES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # mode: (task types, required keys, optional keys)
    "window": (("qa", "ner", "re"), ("stride",), ("window",)),
    "head_tail": (("summarization",), ("head", "tail"), ("marker",)),
}


def _count(value: Any, key: str, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise TaskDeclarationError(f"{where}: long_inputs.{key} must be an integer >= {least}, got {value!r}")
    return value


def check_long_inputs(value: Any, task_type: str, where: str) -> None:
    """Raise a ``TaskDeclarationError`` naming ``where`` unless ``value`` is a valid declaration."""
    if not isinstance(value, Mapping) or value.get("mode") not in MODES:
        mode = value.get("mode") if isinstance(value, Mapping) else value
        raise TaskDeclarationError(
            f"{where}: long_inputs.mode must be one of {sorted(MODES)}, got {mode!r} "
            "(e.g. long_inputs: {mode: window, stride: 128})"
        )
    types, required, optional = MODES[value["mode"]]
    if task_type not in types:
        raise TaskDeclarationError(
            f"{where}: long_inputs mode {value['mode']!r} is for {'/'.join(types)} tasks, not {task_type!r}"
        )
    missing, unknown = set(required) - set(value), set(value) - {"mode", *required, *optional}
    if missing or unknown:
        raise TaskDeclarationError(
            f"{where}: long_inputs {value['mode']!r} takes {', '.join(required + optional)}"
            f"{f'; missing {sorted(missing)}' if missing else ''}{f'; unknown {sorted(unknown)}' if unknown else ''}"
        )
    if value["mode"] == "window":
        stride = _count(value["stride"], "stride", where, 0)
        if "window" in value and _count(value["window"], "window", where, 1) <= stride:
            raise TaskDeclarationError(
                f"{where}: long_inputs.stride ({stride}) must be smaller than long_inputs.window ({value['window']}): "
                "stride is the overlap of consecutive windows"
            )
    else:
        if _count(value["head"], "head", where, 0) + _count(value["tail"], "tail", where, 0) == 0:
            raise TaskDeclarationError(f"{where}: long_inputs head + tail must keep at least one token")
        if not isinstance(value.get("marker", ""), str):
            raise TaskDeclarationError(f"{where}: long_inputs.marker must be a string, got {value['marker']!r}")
