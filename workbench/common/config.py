"""Frozen config dataclasses with YAML presets (`smoke`, `quick`, `cpu`, `paper`).

Every pipeline config subclasses `RunConfig` and names its preset file in `PRESETS`
(`workbench/presets/<PRESETS>.yaml`, one mapping per preset). Unknown keys are errors.

>>> cfg = PruningConfig.from_preset("quick", num_blocks=4)      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from workbench.common.registry import did_you_mean

PROFILES = ("smoke", "quick", "cpu", "paper")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Fields every run has. Subclasses add their own, each with a `help` metadata entry."""

    PRESETS: ClassVar[str] = ""  # preset file stem under workbench/presets/

    preset: str = field(default="custom", metadata={"help": "preset this config came from"})
    seed: int = field(default=0, metadata={"help": "seed for every RNG of the run"})
    output_dir: str | None = field(
        default=None, metadata={"help": "runs root; None = $WORKBENCH_RUNS or ./runs"}
    )
    run_name: str | None = field(default=None, metadata={"help": "run folder name; None = auto"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})

    def __post_init__(self) -> None:
        _check_types(self)
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto|float32|bfloat16|float16, got {self.dtype!r}")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        if not cls.PRESETS:
            return {}
        text = resources.files("workbench").joinpath(f"presets/{cls.PRESETS}.yaml").read_text()
        return yaml.safe_load(text) or {}

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any):
        """Build from a named preset; `None` overrides keep the preset value (papermill-friendly)."""
        presets = cls.presets()
        if preset not in presets:
            raise ValueError(
                f"unknown preset {preset!r} for {cls.__name__}.{did_you_mean(preset, list(presets))}"
                f" Available: {', '.join(presets)}"
            )
        values = dict(presets[preset] or {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["preset"] = preset
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = cls.field_names()
        unknown = [k for k in values if k not in names]
        if unknown:
            k = unknown[0]
            raise ValueError(
                f"unknown config key {k!r} for {cls.__name__}.{did_you_mean(k, names)}"
                f" Valid keys: {', '.join(names)}"
            )
        hints = typing.get_type_hints(cls)
        fixed = {k: _coerce(v, hints.get(k)) for k, v in values.items()}
        return cls(**fixed)

    @classmethod
    def from_yaml(cls, path: str | Path):
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def replace(self, **changes: Any):
        return self.from_dict({**self.to_dict(), **changes})

    def help(self) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(self)}


def option(default: Any, help_: str) -> Any:
    """A config field with its help text (shown by `RunConfig.help()` and the notebooks)."""
    return field(default=default, metadata={"help": help_})


def _origin_types(tp: Any) -> tuple[Any, ...]:
    if tp is None:
        return ()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(tp) for t in _origin_types(a))
    if origin is typing.Literal:
        return tuple({type(a) for a in typing.get_args(tp)})
    return (origin or tp,)


def _coerce(value: Any, tp: Any) -> Any:
    """YAML gives lists where configs want tuples, and ints where they want floats."""
    kinds = _origin_types(tp)
    if isinstance(value, list) and tuple in kinds:
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds and int not in kinds:
        return float(value)
    return value


def _check_types(cfg: RunConfig) -> None:
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp, value = hints.get(f.name), getattr(cfg, f.name)
        kinds = [k for k in _origin_types(tp) if isinstance(k, type)]
        if not kinds or value is None and type(None) in kinds:
            continue
        if isinstance(value, bool) and bool not in kinds and int in kinds:
            raise TypeError(f"config key {f.name!r}: expected {tp}, got {value!r}")
        if not isinstance(value, tuple(kinds)):
            raise TypeError(
                f"config key {f.name!r}: expected {getattr(tp, '__name__', tp)}, got {value!r}"
            )
        if typing.get_origin(tp) is typing.Literal and value not in typing.get_args(tp):
            raise ValueError(
                f"config key {f.name!r}: must be one of {typing.get_args(tp)}, got {value!r}"
            )
    for f in dataclasses.fields(cfg):
        tp = hints.get(f.name)
        for a in typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ():
            value = getattr(cfg, f.name)
            literal = typing.get_origin(a) is typing.Literal
            if literal and value is not None and value not in typing.get_args(a):
                raise ValueError(
                    f"config key {f.name!r}: must be one of {typing.get_args(a)}, got {value!r}"
                )
