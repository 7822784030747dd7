"""The process's random streams (torch, CUDA, numpy, Python) as checkpoint data, and back.

Dropout (LoRA's) draws from the global torch RNG. A fit seeds it from the module's ``seed`` when it starts,
so a rerun of one config trains one adapter whatever ran before it in the process; a checkpoint carries the
streams' state, so a resumed run draws the masks the uninterrupted one drew. Stored as tensors and plain
numbers: checkpoints stay loadable with ``torch.load(weights_only=True)`` (``metaprompt.consolidation``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RNG_KEY = "metaprompt_rng_states"  # checkpoint key


def rng_states() -> dict[str, Any]:
    """The current state of every global random stream."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(state), python_gauss],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Put every global random stream back where :func:`rng_states` found it."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))
