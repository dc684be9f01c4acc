"""One text-generation helper for chat sampling, answers, revisions and judging.

``generate(model, tokenizer, prompts, ...)`` takes prompts that are already rendered (chat
template applied, any assistant prefix appended) and returns the new text of each, in order:

- ``backend="hf"``: left-padded batches through ``model.generate`` (greedy when
  ``temperature == 0``, else sampling with ``temperature`` / ``top_p``); inputs go to the model's
  first device, so a model loaded with ``device_map="auto"`` works as it is.
- ``backend="vllm"``: a vLLM engine on ``model_path`` (a folder or hub id), cached per process;
  prompts are tokenized with the same tokenizer and passed as token ids, so both backends see
  the same tokens. Needs ``vllm`` installed and CUDA.
- ``backend="auto"``: vLLM when it is installed, CUDA exists and ``model_path`` is given; HF
  otherwise.

The contract is the same for every backend: one string per prompt, decoded without special
tokens, the prompt not included (``strip=True`` also strips whitespace). Sampling uses
``temperature``, ``top_p`` and the model's ``top_k`` (transformers' default 50) on both
backends. ``seed``
makes sampling repeatable (HF: ``torch.manual_seed`` once before the first batch; vLLM: the sampling
seed). ``chat_prompts`` renders conversations with a chat template, ``generate_chat`` does both.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "auto")
_VLLM_ENGINES: dict[tuple, Any] = {}


def vllm_available() -> bool:
    """vLLM is installed and CUDA is usable (the condition for ``backend="auto"``)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pick_backend(backend: str = "auto", model_path: str | None = None) -> str:
    """``hf`` or ``vllm`` for a requested backend (``auto``: vLLM only with a model path)."""
    if backend not in BACKENDS:
        raise ValueError(f"generation backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "vllm" if model_path is not None and vllm_available() else "hf"
    if backend == "vllm":
        if model_path is None:
            raise ValueError("generation backend 'vllm' needs model_path (a folder or hub id)")
        if not vllm_available():
            raise ImportError("generation backend 'vllm' needs the vllm package and CUDA; "
                              "use backend='hf' or 'auto'")
    return backend


def chat_prompts(tokenizer, conversations: Sequence[str | Sequence[dict[str, str]]], *,
                 chat_template: str | None = None, assistant_prefix: str = "") -> list[str]:
    """Render user texts (one turn) or whole conversations (lists of messages ending with a
    user turn) with the tokenizer's chat template (or ``chat_template``), open the assistant
    turn and append ``assistant_prefix``."""
    out = []
    for c in conversations:
        msgs = [{"role": "user", "content": c}] if isinstance(c, str) else list(c)
        kw = {"chat_template": chat_template} if chat_template else {}
        out.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                 **kw) + assistant_prefix)
    return out


def _add_special(tokenizer, texts: Sequence[str], add_special_tokens: bool | str) -> bool:
    if add_special_tokens == "auto":  # add BOS unless the rendered text starts with it already
        bos = tokenizer.bos_token
        return not (bos and texts and texts[0].startswith(bos))
    return bool(add_special_tokens)


def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int,
             temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 8,
             seed: int | None = None, backend: str = "hf", model_path: str | None = None,
             add_special_tokens: bool | str = False, strip: bool = False,
             vllm_kwargs: dict[str, Any] | None = None) -> list[str]:
    """Continue each rendered prompt; one string per prompt, in order.

    Args:
        model: a HF causal LM (may be None with the vLLM backend).
        tokenizer: its tokenizer (also tokenizes for vLLM).
        prompts: rendered prompt texts (see ``chat_prompts``).
        max_new_tokens: new tokens per prompt at most.
        temperature: 0 = greedy; > 0 samples with ``top_p``.
        batch_size: prompts per HF ``generate`` call (vLLM schedules its own batches).
        seed: seed for sampling (None: the current RNG state).
        backend: ``hf`` | ``vllm`` | ``auto`` (see the module docstring).
        model_path: folder or hub id of the model, for vLLM.
        add_special_tokens: passed to the tokenizer; ``"auto"`` adds them unless the first
            prompt already starts with the BOS token.
        strip: strip whitespace around each output.
        vllm_kwargs: extra ``vllm.LLM`` arguments (e.g. ``gpu_memory_utilization``,
            ``tensor_parallel_size``).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
    prompts = list(prompts)
    if not prompts:
        return []
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    add = _add_special(tokenizer, prompts, add_special_tokens)
    which = pick_backend(backend, model_path)
    if which == "vllm":
        outs = _generate_vllm(tokenizer, prompts, model_path, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, seed=seed,
                              add_special_tokens=add, dtype=_model_dtype(model),
                              top_k=_model_top_k(model), extra=vllm_kwargs or {})
    else:
        if model is None:
            raise ValueError("generation backend 'hf' needs a model")
        outs = _generate_hf(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, batch_size=batch_size,
                            seed=seed, add_special_tokens=add)
    return [o.strip() for o in outs] if strip else outs


def generate_chat(model, tokenizer, conversations: Sequence[str | Sequence[dict[str, str]]], *,
                  chat_template: str | None = None, assistant_prefix: str = "",
                  **kw: Any) -> list[str]:
    """``chat_prompts`` then ``generate`` (``kw``: ``generate``'s keyword arguments)."""
    texts = chat_prompts(tokenizer, conversations, chat_template=chat_template,
                         assistant_prefix=assistant_prefix)
    return generate(model, tokenizer, texts, **kw)


def _model_top_k(model) -> int:
    """The HF model's sampling top-k (its generation config, else transformers' default 50)."""
    cfg = getattr(model, "generation_config", None)
    return int(getattr(cfg, "top_k", None) or 50)


def _model_dtype(model) -> str:
    if model is None:
        return "auto"
    return str(getattr(model, "dtype", "auto")).removeprefix("torch.")


def _generate_hf(model, tokenizer, prompts: list[str], *, max_new_tokens: int,
                 temperature: float, top_p: float, batch_size: int, seed: int | None,
                 add_special_tokens: bool) -> list[str]:
    import torch

    from workbench.common.runtime import model_device

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    dev = model_device(model)
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        if seed is not None:
            torch.manual_seed(seed)
    else:
        kw["do_sample"] = False
    outs: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(dev)
            with torch.no_grad():
                gen = model.generate(**enc, **kw)
            outs += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:],
                                           skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return outs


def _vllm_engine(model_path: str, dtype: str, extra: dict[str, Any]):
    key = (str(model_path), dtype, tuple(sorted(extra.items())))
    if key not in _VLLM_ENGINES:
        from vllm import LLM

        from workbench.common.hub import local_model_dir

        log.info("starting a vLLM engine on %s (%s)", model_path, dtype)
        _VLLM_ENGINES.clear()  # one engine at a time: each holds most of the GPU's memory
        _VLLM_ENGINES[key] = LLM(model=str(local_model_dir(model_path)), dtype=dtype,
                                 trust_remote_code=False, **extra)
    return _VLLM_ENGINES[key]


def _generate_vllm(tokenizer, prompts: list[str], model_path: str, *, max_new_tokens: int,
                   temperature: float, top_p: float, seed: int | None, add_special_tokens: bool,
                   dtype: str, top_k: int, extra: dict[str, Any]) -> list[str]:
    from vllm import SamplingParams

    llm = _vllm_engine(model_path, dtype if dtype in ("bfloat16", "float16", "float32") else "auto",
                       extra)
    # the HF model's top-k when sampling (transformers' default 50), so both backends sample alike
    params = SamplingParams(temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                            top_k=top_k if temperature > 0 else -1, max_tokens=max_new_tokens,
                            seed=seed, skip_special_tokens=True)
    ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    results = llm.generate([{"prompt_token_ids": list(x)} for x in ids], params, use_tqdm=False)
    return [r.outputs[0].text for r in results]
