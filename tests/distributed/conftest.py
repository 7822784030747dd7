"""The distributed tests import their helpers (``launch``, ``stages``, ``cpu_deepspeed``) as top-level
modules, like ``worker.py`` does when it runs as a script: put this folder on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
