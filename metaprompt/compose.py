"""A run is its stage YAML plus overrides, resolved by the CLI's parser: the one way every command builds one.

``metaprompt fit -c lightning_configs/teacher.yaml -c overrides.yaml`` and the pipeline's teacher stage take
the same three steps, so they resolve to the same config (``tests/test_compose.py`` checks it):

1. the shipped stage YAML (:data:`STAGE_FILES`, package data: found without a source checkout);
2. deep-merged with the overrides (:func:`merge`: mappings merge key by key, anything else — lists
   included — is replaced, as a second ``-c`` file does);
3. parsed by ``MetapromptCLI``'s own parser (:func:`resolve`): types checked, the defaults of the
   module, the data module and the Trainer filled in, ``model.backbone`` linked into the data.

:func:`instantiate` then builds the model, data module and Trainer exactly as ``metaprompt fit`` does
(the same ``MetapromptCLI``), and :func:`dump` writes the resolved config that ``metaprompt fit -c``
reruns.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import yaml
from jsonargparse import Namespace

from metaprompt.cli import MetapromptCLI
from metaprompt.configs import CONFIG_DIR

STAGE_FILES = {
    "teacher": "teacher.yaml",
    "distill": "distill.yaml",
    "grow": "grow.yaml",
    "target": "target.yaml",
    "prompt_tuning": "prompt_tuning.yaml",
    "lora": "lora.yaml",
    "zero_shot": "zero_shot.yaml",
}
"""Stage name -> its shipped YAML under ``lightning_configs/``."""


def stage_config(stage: str) -> dict[str, Any]:
    """The shipped YAML of ``stage`` as a dict (a fresh copy).

    Raises:
        ValueError: for a stage with no shipped YAML (naming the known ones).
    """
    if stage not in STAGE_FILES:
        raise ValueError(f"unknown stage {stage!r}; stages with a shipped YAML: {sorted(STAGE_FILES)}")
    return yaml.safe_load((CONFIG_DIR / STAGE_FILES[stage]).read_text(encoding="utf-8"))


def merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each of ``overrides`` merged over it: mappings key by key (recursively), any other
    value (a list, a scalar, None) replacing what was there. Inputs are left unchanged."""
    out = copy.deepcopy(base)
    for over in overrides:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


class _ParserOnly(MetapromptCLI):
    """``MetapromptCLI`` that builds its parser and stops (nothing parsed or instantiated)."""

    def parse_arguments(self, parser, args) -> None:
        self.config = Namespace(seed_everything=False)  # building the parser must not seed anything

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


@functools.cache
def parser():
    """``MetapromptCLI``'s parser (built once per process: building it inspects every class it configures)."""
    from metaprompt.data import MultitaskDataModule
    from metaprompt.modules import PromptModule

    return _ParserOnly(
        PromptModule,
        MultitaskDataModule,
        subclass_mode_model=True,
        run=False,
        seed_everything_default=0,
        args=[],
        parser_kwargs={"exit_on_error": False},  # a bad value raises (naming the key) instead of exiting
    ).parser


def resolve(stage: str, *overrides: dict[str, Any]) -> Namespace:
    """The resolved config of ``stage``'s YAML with ``overrides`` merged over it (see module docstring).

    Raises:
        argparse.ArgumentError: naming the key, for a value of the wrong type or a key the module, data
            module or Trainer does not take.
    """
    return parser().parse_object(merge(stage_config(stage), *overrides))


def plain(config: Namespace) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (what :func:`dump` writes)."""
    return yaml.safe_load(dump(config))


def dump(config: Namespace) -> str:
    """The resolved config as YAML; ``metaprompt fit -c`` that file rebuilds the same run."""
    return parser().dump(config, skip_none=False)


def instantiate(config: Namespace) -> MetapromptCLI:
    """Model, data module and Trainer of a resolved config, built by ``MetapromptCLI`` as ``metaprompt fit``
    builds them (``.model``, ``.datamodule``, ``.trainer``; the config file is written by the caller)."""
    from metaprompt.data import MultitaskDataModule
    from metaprompt.modules import PromptModule

    with warnings.catch_warnings():  # the config comes from code, not from a command line beside it
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return MetapromptCLI(
            PromptModule,
            MultitaskDataModule,
            subclass_mode_model=True,
            args=config,
            run=False,
            save_config_callback=None,
            seed_everything_default=0,
        )
