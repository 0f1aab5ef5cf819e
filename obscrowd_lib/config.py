"""Configs: frozen dataclasses, saved as JSON beside every artifact they produced.

Each stage has its own config dataclass in its own module (``TeacherConfig`` in
:mod:`obscrowd_lib.teacher`, ``MaskConfig`` in :mod:`obscrowd_lib.masks`, …); this module only
saves and restores them, so a run folder always says how its files were made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass config, with its class name."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(cfg).__name__} is not a dataclass config")
    return {"__class__": type(cfg).__name__, **json.loads(json.dumps(dataclasses.asdict(cfg), default=str))}


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config (for cache keys)."""
    return hashlib.sha256(json.dumps(config_dict(cfg), sort_keys=True).encode()).hexdigest()[:16]


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as JSON to ``path`` atomically; returns the path."""
    from .io import write_json

    return write_json(path, config_dict(cfg))


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a config saved by :func:`save_config` back into ``cls`` (unknown keys are an error)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read config ({e})") from e
    raw.pop("__class__", None)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**kwargs)
