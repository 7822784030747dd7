"""Progress display: TQDM bars on a terminal, plain lines (or nothing) when the output is a log or CI.

A bar redrawn with carriage returns is unreadable in a log file, so every long step (training, scoring,
the teacher cache, tokenisation, weight loading) shows a bar only when stderr is a terminal; elsewhere
the libraries' bars are switched off and metaprompt prints a line every few steps
(:class:`metaprompt.callbacks.StepPrinter`). ``METAPROMPT_PROGRESS=1`` / ``0`` forces bars on / off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def interactive() -> bool:
    """Whether progress bars are shown: ``METAPROMPT_PROGRESS`` when set to 0/1, else stderr is a terminal."""
    forced = os.environ.get("METAPROMPT_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


def quiet_libraries() -> None:
    """Switch the libraries' own bars (transformers' weight loading and GGUF conversion, ``datasets``'
    tokenisation, hub downloads, and any other tqdm through ``TQDM_DISABLE``) off when not interactive."""
    if interactive():
        return
    os.environ["TQDM_DISABLE"] = "1"  # tqdm >= 4.66 reads its defaults from TQDM_* variables
    import datasets
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it") -> tqdm:
    """A TQDM bar that is disabled when not :func:`interactive` (iterating it then costs nothing extra)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not interactive(), dynamic_ncols=True, leave=False)
