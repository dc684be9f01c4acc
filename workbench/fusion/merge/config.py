"""`MergeConfig` and the mergekit-style YAML reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from workbench.common.config import RunConfig
from workbench.common.registry import did_you_mean
from workbench.fusion.merge.registry import MERGE_METHODS, PER_MODEL_PARAMS

MERGE_DTYPES = ("float32", "bfloat16", "float16")

# mergekit top-level keys we understand, and how they map to MergeConfig fields
MERGEKIT_KEYS = {
    "models": "models", "base_model": "base_model", "merge_method": "merge_method",
    "parameters": "parameters", "dtype": "merge_dtype", "out_dtype": "out_dtype",
    "tokenizer_source": "tokenizer_source", "tokenizer": "tokenizer_source",
    "chat_template": "chat_template",
}
MODEL_ENTRY_KEYS = ("model", "parameters")


@dataclass(frozen=True, kw_only=True)
class MergeConfig(RunConfig):
    """One merge: inputs, method, its parameters, dtypes and the output folder."""

    models: tuple[str, ...] = field(
        default=(), metadata={"help": "models to merge (registry names or folders)"})
    base_model: str | None = field(
        default=None, metadata={"help": "pivot / base; required except for linear"})
    merge_method: str = field(default="sce", metadata={"help": "a key of MERGE_METHODS"})
    parameters: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "global kernel parameters (mergekit `parameters`)"})
    model_parameters: tuple[dict[str, Any], ...] = field(
        default=(), metadata={"help": "per-model parameters (weight, density), one per model"})
    merge_dtype: str = field(
        default="float32", metadata={"help": "dtype inputs are cast to (mergekit `dtype`)"})
    out_dtype: str | None = field(
        default=None, metadata={"help": "dtype of the written model; None = merge_dtype"})
    out_dir: str | None = field(
        default=None, metadata={"help": "output folder; None = <runs root>/merge/<run name>/model"})
    tokenizer_source: str | None = field(
        default=None, metadata={"help": "model whose tokenizer is copied; None/'base' = base"})
    chat_template: str | None = field(
        default=None, metadata={"help": "a .jinja file or template text; None = the tokenizer's"})
    max_shard_bytes: int = field(
        default=2_000_000_000, metadata={"help": "maximum size of one written shard"})
    shape_mismatch: Literal["error", "keep_base"] = field(
        default="error", metadata={"help": "non-vocab tensor of another shape: error, or keep "
                                           "the base tensor (FuseChat-mergekit behaviour)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing out_dir"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models:
            raise ValueError("MergeConfig.models is empty: list the models to merge")
        MERGE_METHODS.check(self.merge_method)
        uses_base = MERGE_METHODS.meta(self.merge_method).get("uses_base", True)
        if uses_base and not self.base_model:
            raise ValueError(f"merge_method {self.merge_method!r} needs base_model (the pivot)")
        for name in ("merge_dtype", "out_dtype"):
            value = getattr(self, name)
            if value is not None and value not in MERGE_DTYPES:
                raise ValueError(
                    f"{name} must be one of {MERGE_DTYPES}, got {value!r}."
                    f"{did_you_mean(str(value), MERGE_DTYPES)}"
                )
        if self.model_parameters and len(self.model_parameters) != len(self.models):
            raise ValueError(
                f"model_parameters has {len(self.model_parameters)} entries for "
                f"{len(self.models)} models"
            )
        for params in self.model_parameters:
            for key in params:
                if key not in PER_MODEL_PARAMS:
                    raise ValueError(
                        f"per-model parameter {key!r} is not supported.{did_you_mean(key, PER_MODEL_PARAMS)}"
                        f" Per-model parameters: {', '.join(PER_MODEL_PARAMS)}"
                    )
        if self.max_shard_bytes <= 0:
            raise ValueError(f"max_shard_bytes must be > 0, got {self.max_shard_bytes}")


def load_merge_yaml(path: str | Path, **overrides: Any) -> MergeConfig:
    """Read a mergekit-style YAML (`models`, `base_model`, `merge_method`, `parameters`, `dtype`).

    Also accepts MergeConfig field names (e.g. `out_dir`, `seed`). Unknown keys, unknown methods
    and `slices:` configs raise ValueError. `overrides` (not None) win over the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(raw).__name__}")
    if "slices" in raw:
        raise ValueError(f"{path}: `slices:` configs are not supported; list `models:` instead")
    fields = MergeConfig.field_names()
    valid = sorted(set(MERGEKIT_KEYS) | set(fields))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in valid:
            raise ValueError(
                f"{path}: unknown key {key!r}.{did_you_mean(str(key), valid)} Valid keys: "
                f"{', '.join(valid)}"
            )
        target = MERGEKIT_KEYS.get(key, key)
        if key == "tokenizer":  # mergekit `tokenizer: {source: base|path}`
            value = value.get("source") if isinstance(value, dict) else value
        if key == "models":
            value = _models(path, value, values)
            continue
        values[target] = value
    method = values.get("merge_method", "sce")
    if method not in MERGE_METHODS:
        raise ValueError(
            f"{path}: unknown merge_method {method!r}.{did_you_mean(str(method), MERGE_METHODS.names())}"
            f" Available: {', '.join(MERGE_METHODS.names())}"
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("tokenizer_source") == "base":
        values["tokenizer_source"] = None
    return MergeConfig.from_dict(values)


def _models(path: Path, entries: Any, values: dict[str, Any]) -> None:
    """mergekit `models:` list -> `models` + `model_parameters` (in `values`)."""
    if not isinstance(entries, list):
        raise ValueError(f"{path}: `models` must be a list of {{model: ..., parameters: ...}}")
    models, params = [], []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            raise ValueError(f"{path}: each `models` entry needs a `model` key, got {entry!r}")
        for key in entry:
            if key not in MODEL_ENTRY_KEYS:
                raise ValueError(
                    f"{path}: unknown key {key!r} in models entry.{did_you_mean(str(key), MODEL_ENTRY_KEYS)}"
                    f" Valid keys: {', '.join(MODEL_ENTRY_KEYS)}"
                )
        models.append(str(entry["model"]))
        params.append(dict(entry.get("parameters") or {}))
    values["models"] = tuple(models)
    if any(params):  # else keep an explicit `model_parameters:` key (our own YAML)
        values["model_parameters"] = tuple(params)
