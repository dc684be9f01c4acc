"""`run_merge`: stream one tensor at a time through a registered merge kernel.

Peak memory is about one tensor per input plus one output shard (`max_shard_bytes`): inputs are
read tensor by tensor with `safe_open` (never kept mapped) and the output is flushed shard by
shard. Vocabulary handling (spec `papers.md` §1.a step 5: "embeddings/lm_head of a different size
are cropped to the base shape"): the output always has the base's shapes; for embedding / head
matrices the first min(vocab) rows over all inputs are merged and the base's rows beyond the
smallest vocabulary are kept as they are (the spec is silent on those rows). A tied base writes
no `lm_head` (the inputs' heads are ignored); an untied base merged with tied inputs uses their
input embeddings as their heads.

Inputs are model folders, registry names or hub ids (resolved to local snapshots by
`workbench.common.hub`; offline from the hub cache only). Each tensor is merged on `cfg.device`
(`auto`: CUDA when available, else CPU) and written from the CPU; on CUDA a random method (DARE)
draws its masks from a CUDA generator, so they differ from a CPU merge with the same seed.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from workbench.common.hub import local_model_dir
from workbench.common.io import atomic_write_text, sha256_file, write_json, write_yaml
from workbench.common.registry import did_you_mean
from workbench.common.rundir import config_hash, runs_root
from workbench.common.runtime import resolve_device, track
from workbench.fusion.merge.checkpoint import (
    HEAD_SUFFIXES,
    Checkpoint,
    ShardWriter,
    is_vocab_tensor,
)
from workbench.fusion.merge.config import MergeConfig
from workbench.fusion.merge.registry import MERGE_METHODS, PER_MODEL_PARAMS

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# mergekit parameter names that are not valid Python keywords / that we accept and ignore
_ALIASES = {"lambda": "lambda_", "select_scope": "variant"}
_SCOPE_VALUES = {"weights": "official", "weights_and_deltas": "masked"}
_IGNORED = ("int8_mask",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json",
                   "spiece.model", "chat_template.jinja", "chat_template.json")
CHECKSUMS = "checksums.sha256"


@dataclass
class MergeResult:
    out_dir: Path
    merge_method: str
    params: dict[str, Any]
    num_tensors: int
    seconds: float
    files: dict[str, str] = field(default_factory=dict)  # written file -> sha256
    kept_base: list[str] = field(default_factory=list)  # tensors copied from the base
    vocab_cropped: list[str] = field(default_factory=list)  # tensors merged on min(vocab) rows


def bind_params(method: str, params: dict[str, Any], model_params: list[dict[str, Any]],
                generator: torch.Generator | None) -> dict[str, Any]:
    """Check mergekit-style parameters against the kernel's keyword arguments."""
    fn = MERGE_METHODS.get(method)
    valid = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "generator"]
    shown = [next((k for k, v in _ALIASES.items() if v == n), n) for n in valid]
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _IGNORED:
            log.info("parameter %r has no effect here (ignored)", key)
            continue
        name = _ALIASES.get(key, key)
        if name not in valid:
            raise ValueError(
                f"merge method {method!r} has no parameter {key!r}.{did_you_mean(key, shown)}"
                f" Valid: {', '.join(shown) or '(none)'}"
            )
        if key == "select_scope":
            value = _SCOPE_VALUES.get(value, value)
        out[name] = value
    for key in PER_MODEL_PARAMS:
        if any(key in mp for mp in model_params):
            if key not in valid:
                raise ValueError(f"merge method {method!r} takes no per-model {key!r}")
            out[key] = [mp.get(key, params.get(key)) for mp in model_params]
    if MERGE_METHODS.meta(method).get("random"):
        out["generator"] = generator
    return out


def _out_dir(cfg: MergeConfig) -> Path:
    if cfg.out_dir:
        return Path(cfg.out_dir)
    name = cfg.run_name or f"{cfg.preset}-{config_hash(cfg.to_dict())}"
    return runs_root(cfg.output_dir) / "merge" / name / "model"


def _same(a: Checkpoint, b: Checkpoint) -> bool:
    return a.folder.resolve() == b.folder.resolve()


def _check_compatible(base: Checkpoint, inputs: list[Checkpoint]) -> None:
    """Fail before merging anything: architecture, tensor names."""
    base_names = set(base.names)
    for ck in inputs:
        if base.config and ck.config and ck.architecture != base.architecture:
            raise ValueError(
                f"different architectures: base {base.label!r} is {base.architecture[0]} "
                f"{list(base.architecture[1])}, model {ck.label!r} is {ck.architecture[0]} "
                f"{list(ck.architecture[1])}"
            )
        for name in base.names:
            if ck.resolve(name) is None:
                raise ValueError(f"tensor {name!r} of base {base.label!r} is missing from model "
                                 f"{ck.label!r} (different architectures?)")
        for name in ck.names:
            if name not in base_names and not (base.tied and name.endswith(HEAD_SUFFIXES)):
                raise ValueError(f"tensor {name!r} of model {ck.label!r} is not in base "
                                 f"{base.label!r} (different architectures?)")
        if base.tied and not ck.tied and any(n.endswith(HEAD_SUFFIXES) for n in ck.names):
            log.warning("base %s ties its embeddings: the lm_head of %s is ignored",
                        base.label, ck.label)


def _check_finite(name: str, tensor: torch.Tensor, label: str, role: str) -> None:
    # the sum is finite whenever every entry is (NaN/Inf propagate): a cheap first test, with the
    # element-wise check only when the sum is not finite (it may also just have overflowed)
    if (tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum()))
            and not bool(torch.isfinite(tensor).all())):
        raise ValueError(f"NaN/Inf in the delta of tensor {name!r}: {role} {label!r} has "
                         f"non-finite values")


def run_merge(cfg: MergeConfig) -> MergeResult:
    """Merge `cfg.models` into `cfg.base_model` with `cfg.merge_method`; write a HF folder.

    Writes (atomically: a temp folder renamed at the end) the merged safetensors (sharded with an
    index when larger than `max_shard_bytes`), config.json, generation_config.json, tokenizer
    files, chat template, `merge_config.yaml` and `checksums.sha256`.
    """
    t0 = time.perf_counter()
    method = MERGE_METHODS.check(cfg.merge_method)
    fn = MERGE_METHODS.get(method)
    uses_base = MERGE_METHODS.meta(method).get("uses_base", True)
    device = resolve_device(cfg.device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    merge_dtype = _DTYPES[cfg.merge_dtype]
    out_dtype = _DTYPES[cfg.out_dtype or cfg.merge_dtype]

    base_label = cfg.base_model or cfg.models[0]
    base = Checkpoint(local_model_dir(base_label), base_label)
    model_params = list(cfg.model_parameters) or [{} for _ in cfg.models]
    inputs, kept_params = [], []
    for label, mp in zip(cfg.models, model_params, strict=True):
        ck = Checkpoint(local_model_dir(label), label)
        if uses_base and _same(ck, base):  # mergekit lists the pivot among `models`: skip it
            continue
        inputs.append(ck)
        kept_params.append(mp)
    if not inputs:
        raise ValueError(f"nothing to merge: every model in `models` is the base {base_label!r}")
    params = bind_params(method, dict(cfg.parameters), kept_params, generator)
    _check_compatible(base, inputs)

    out = _out_dir(cfg)
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"output folder {out} exists; pass overwrite=True or another out_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    kept_base, cropped = [], []
    try:
        writer = ShardWriter(tmp, cfg.max_shard_bytes)
        for name in track(base.names, desc=f"merge ({method})"):
            b = base.load(name)
            _check_finite(name, b, base.label, "base")
            if not b.is_floating_point():  # integer buffers: copy the base
                writer.write(name, b)
                continue
            tensors = []
            for ck in inputs:
                t = ck.load(name)
                _check_finite(name, t, ck.label, "model")
                tensors.append(t)
            merged = _merge_one(name, fn, params, b, tensors, inputs, base.label, cfg, device,
                                merge_dtype, kept_base, cropped)
            writer.write(name, merged.to(out_dtype).cpu())
        files = writer.close()
        files += _write_extras(cfg, base, tmp, out_dtype, params)
        sums = {f: sha256_file(tmp / f) for f in sorted(files)}
        atomic_write_text(tmp / CHECKSUMS, "".join(f"{h}  {f}\n" for f, h in sums.items()))
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            shutil.rmtree(trash)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log.info("merged %d tensors with %s into %s in %.1fs", len(base.names), method, out, seconds)
    return MergeResult(out_dir=out, merge_method=method, params=_printable(params),
                       num_tensors=len(base.names), seconds=seconds, files=sums,
                       kept_base=kept_base, vocab_cropped=cropped)


def _merge_one(name, fn, params, b, tensors, inputs, base_label, cfg, device, merge_dtype,
               kept_base, cropped) -> torch.Tensor:
    """Merge one tensor, handling vocabulary-size differences and shape mismatches."""
    rows = None
    for ck, t in zip(inputs, tensors, strict=True):
        if t.shape == b.shape:
            continue
        vocab_like = (is_vocab_tensor(name) and t.ndim == b.ndim and t.ndim >= 1
                      and t.shape[1:] == b.shape[1:])
        if vocab_like:
            rows = min(rows or b.shape[0], t.shape[0], b.shape[0])
            continue
        if cfg.shape_mismatch == "keep_base":
            log.warning("tensor %s: %s has shape %s, base %s; keeping the base tensor",
                        name, ck.label, tuple(t.shape), tuple(b.shape))
            kept_base.append(name)
            return b
        raise ValueError(f"shape mismatch in tensor {name!r}: base {base_label!r} has "
                         f"{tuple(b.shape)}, model {ck.label!r} has {tuple(t.shape)}")
    bd = b.to(device=device, dtype=merge_dtype)
    if rows is None:
        return fn(bd, [t.to(device=device, dtype=merge_dtype) for t in tensors], **params)
    # rows beyond the smallest vocabulary: the base's rows, unchanged
    cropped.append(name)
    part = fn(bd[:rows], [t[:rows].to(device=device, dtype=merge_dtype) for t in tensors],
              **params)
    merged = bd.clone()
    merged[:rows] = part
    return merged


def _printable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "generator"}


def _write_extras(cfg: MergeConfig, base: Checkpoint, tmp: Path, out_dtype: torch.dtype,
                  params: dict[str, Any]) -> list[str]:
    """config.json, generation config, tokenizer, chat template, resolved config."""
    written = []
    if base.config:
        config = dict(base.config)
        dtype_name = str(out_dtype).removeprefix("torch.")
        config["dtype"] = dtype_name
        if "torch_dtype" in config:
            config["torch_dtype"] = dtype_name
        write_json(tmp / "config.json", config)
        written.append("config.json")
    if (base.folder / "generation_config.json").exists():
        shutil.copy2(base.folder / "generation_config.json", tmp / "generation_config.json")
        written.append("generation_config.json")
    tok_label = cfg.tokenizer_source or base.label
    tok_dir = local_model_dir(tok_label)
    for f in TOKENIZER_FILES:
        if (tok_dir / f).exists():
            shutil.copy2(tok_dir / f, tmp / f)
            written.append(f)
    if cfg.chat_template:
        path = Path(cfg.chat_template).expanduser()
        text = path.read_text(encoding="utf-8") if path.is_file() else cfg.chat_template
        atomic_write_text(tmp / "chat_template.jinja", text)
        written.append("chat_template.jinja")
    # the config as given (loads back with `load_merge_yaml` / `MergeConfig.from_yaml`) and
    # what it resolved to
    write_yaml(tmp / "merge_config.yaml", cfg.to_dict())
    write_json(tmp / "merge_resolved.json", {
        "base_model": str(base.folder), "tokenizer_source": str(tok_dir),
        "params": _printable(params), "method_meta": MERGE_METHODS.meta(cfg.merge_method)})
    written += ["merge_config.yaml", "merge_resolved.json"]
    return sorted(set(written))
