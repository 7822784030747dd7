"""``ArgGroup``: the base of the stage modules' argument groups (``OptimArgs``, ``EvalArgs``).

A group is a frozen dataclass validated in ``__post_init__``. LightningCLI/jsonargparse parse a dataclass
argument as a nested group (``--model.init_args.optim.lr``; a second ``-c`` merges field by field); the
module keeps the group object and stores its plain form in its hyperparameters (checkpoints stay plain
data). ``of`` accepts the group, a dict (Python callers, saved hyperparameters) or None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

G = TypeVar("G", bound="ArgGroup")


@dataclass(frozen=True)
class ArgGroup:
    """Base of a frozen dataclass of related module arguments (itself a dataclass without fields, so
    jsonargparse sees a pure dataclass and parses it as a nested group, not as a ``class_path``)."""

    name = "args"  # the module argument holding the group (in error messages)

    @classmethod
    def of(cls: type[G], value: G | dict[str, Any] | None, **defaults: Any) -> G:
        """``value`` as the group: a dict over ``defaults`` (a module's own defaults, e.g. LoRA's rate).

        Raises:
            ValueError: naming a key the group does not have.
        """
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{cls.name}: no setting(s) {unknown}; it has {known}")
        return cls(**{**defaults, **value})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples): what hyperparameters, checkpoints and resolved configs hold."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
