"""The shipped configs (``metaprompt/lightning_configs``: stage YAMLs, task sets, backbone/strategy fragments).

They are package data, so an installed ``metaprompt`` finds them without a source checkout; in a checkout,
the top-level ``lightning_configs`` is a link to the same folder. ``-c lightning_configs/teacher.yaml`` (or
``-c teacher``) therefore works from any directory: a ``-c`` value that is not an existing file but names a
shipped config is replaced by that file's path (:func:`resolve_config_args`). ``metaprompt configs`` lists
them, to copy and edit.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "lightning_configs"
_PREFIX = "lightning_configs/"
_CONFIG_FLAGS = ("-c", "--config")


def shipped_configs() -> list[str]:
    """Every shipped YAML, as its name relative to ``lightning_configs/`` (e.g. ``backbones/llama-3.1-8b.yaml``)."""
    return sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))


def config_path(name: str) -> Path | None:
    """The shipped config ``name`` names, or None.

    Args:
        name: ``teacher``, ``teacher.yaml``, ``lightning_configs/teacher.yaml`` or
            ``backbones/llama-3.1-8b`` (any of these spellings, with or without ``.yaml``).
    """
    rel = name.removeprefix("./").removeprefix(_PREFIX)
    for candidate in (rel, f"{rel}.yaml"):
        path = CONFIG_DIR / candidate
        if path.is_file() and path.resolve().is_relative_to(CONFIG_DIR):
            return path
    return None


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with each ``-c/--config`` value that is not an existing file, but a shipped config's name,
    replaced by that config's path; every other argument unchanged (a missing file stays for the parser
    to report)."""
    out = list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag in _CONFIG_FLAGS and eq:
            out[i] = f"{flag}={_resolve(value)}"
        elif arg in _CONFIG_FLAGS and i + 1 < len(out):
            out[i + 1] = _resolve(out[i + 1])
    return out


def _resolve(value: str) -> str:
    if Path(value).expanduser().is_file():
        return value
    path = config_path(value)
    return str(path) if path is not None else value


def list_main(argv: list[str]) -> int:
    """``metaprompt configs``: where the shipped configs are, and their names."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: metaprompt configs\n\nList the shipped configs (pass any of them to -c by name).")
        return 0
    print(f"# {CONFIG_DIR}")
    for name in shipped_configs():
        print(f"lightning_configs/{name}")
    return 0
