"""LLM judges for the chat evaluation (``workbench.eval.chat``).

- ``HFJudge(name="qwen2.5-coder-0.5b-instruct")``: a local HF chat model, batched. The offline
  default is the largest local chat model, a 0.5B coder model: a WEAK judge; outputs carry
  ``judge_note`` fields (``WEAK_JUDGE_NOTE``) saying so. Two modes (``JUDGE_MODES``):
  ``generate`` (greedy judgment text, parsed by ``workbench.eval.chat``) and ``expected``
  (next-token probabilities of the allowed answers after ``"Rating: [["`` / ``"Final verdict: [["``,
  one forward pass, no explanation; see ``workbench.eval.chat``).
- ``OpenAIJudge()``: any OpenAI-compatible ``/chat/completions`` endpoint, configured by
  ``WORKBENCH_JUDGE_BASE_URL``, ``WORKBENCH_JUDGE_API_KEY``, ``WORKBENCH_JUDGE_MODEL`` (urllib
  only); it always generates: concurrent requests, retries with backoff, and a jsonl cache of
  finished judgments so a re-run does not pay twice.
- A local judge loads where ``device`` / ``dtype`` / ``device_map`` / ``max_memory`` say
  (``workbench.common.runtime.resolve_placement``) and generates through
  ``workbench.eval.generation.generate`` (``backend`` hf | vllm | auto).
- ``make_judge(kind="auto")``: endpoint when ``WORKBENCH_JUDGE_BASE_URL`` is set, else local HF.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

WEAK_JUDGE_NOTE = ("Offline judge is a small local model (default qwen2.5-coder-0.5b-instruct; quick "
                   "presets may use a smaller one): its scores are weak, noisy evidence, not "
                   "comparable to GPT-4 MT-Bench numbers.")
DEFAULT_LOCAL_JUDGE = "qwen2.5-coder-0.5b-instruct"
JUDGE_MODES = ("expected", "generate")
EXPECTED_RATING_PREFIX = "Rating: [["
EXPECTED_VERDICT_PREFIX = "Final verdict: [["
log = logging.getLogger(__name__)


class Judge(Protocol):
    name: str

    def complete(self, system: str, user: str) -> str: ...


# ---- judges ---------------------------------------------------------------------------------
class HFJudge:
    """Local HF chat model judge (greedy, left-padded batches).

    ``force_format``: when a judgment has no parseable rating/verdict, continue the judge's own
    text with the format's opening (``RATING_SUFFIX``/``VERDICT_SUFFIX``) and read what it writes.
    """

    def __init__(self, name: str = DEFAULT_LOCAL_JUDGE, max_new_tokens: int = 256, model=None,
                 tokenizer=None, batch_size: int = 4, force_format: bool = True,
                 mode: str = "generate", *, device: Any = "auto", dtype: Any = "auto",
                 device_map: Any = None, max_memory: Any = None, backend: str = "hf"):
        if mode not in JUDGE_MODES:
            raise ValueError(f"judge mode must be one of {', '.join(JUDGE_MODES)}, got {mode!r}")
        from workbench.eval.generation import BACKENDS
        if backend not in BACKENDS:
            raise ValueError(f"judge backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.force_format = force_format
        self.mode = mode
        self.backend = backend
        # load_causal_lm's placement (workbench.common.runtime.resolve_placement; auto: CUDA
        # in bf16 where available, else the CPU in float32)
        self.placement = {"device": device, "dtype": dtype, "device_map": device_map,
                          "max_memory": max_memory}
        self._model, self._tok = model, tokenizer

    def _load(self):
        if self._model is None:
            from workbench.common import models
            self._model, self._tok = models.load_causal_lm(self.name, **self.placement)
        return self._model, self._tok

    def _text(self, system: str, user: str, prefix: str = "") -> str:
        _, tok = self._load()
        msgs = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": user}]
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + prefix

    def _generate(self, texts: list[str], max_new_tokens: int) -> list[str]:
        from workbench.eval.generation import generate
        model, tok = self._load()
        return generate(model, tok, texts, max_new_tokens=max_new_tokens,
                        batch_size=self.batch_size, backend=self.backend,
                        model_path=None if self.backend == "hf" else self.name)

    def _token_id(self, text: str) -> int:
        _, tok = self._load()
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return ids[0]
        tid = tok.convert_tokens_to_ids(text)  # SentencePiece adds "▁" when encoding alone
        if isinstance(tid, int) and tid != tok.unk_token_id:
            return tid
        raise ValueError(f"judge {self.name}: {text!r} is not one token ({ids}); the "
                         "'expected' judge mode needs single-token answers")

    def next_token_logprobs(self, texts: list[str], then: str | None = None):
        """Log-probabilities of the next token after each text, one forward pass per batch
        (left padding, explicit positions): a float32 tensor [len(texts), vocab]. With ``then``
        (one token), also those after ``text + then`` from the same KV cache: a pair."""
        import torch
        model, tok = self._load()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        extra = self._token_id(then) if then is not None else None
        from workbench.common.runtime import model_device
        dev = model_device(model)
        first, second = [], []
        for i in range(0, len(texts), self.batch_size):
            enc = tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(dev)
            mask = enc["attention_mask"]
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos,
                            use_cache=extra is not None)
                first.append(out.logits[:, -1].float().log_softmax(-1).cpu())
                if extra is not None:
                    n = len(mask)
                    nxt = model(input_ids=torch.full((n, 1), extra, device=dev),
                                attention_mask=torch.cat([mask, mask.new_ones(n, 1)], 1),
                                position_ids=pos[:, -1:] + 1,
                                past_key_values=out.past_key_values, use_cache=True)
                    second.append(nxt.logits[:, -1].float().log_softmax(-1).cpu())
        a = torch.cat(first) if first else torch.empty(0)
        return (a, torch.cat(second) if second else torch.empty(0)) if extra is not None else a

    def rating_distributions(self, requests: Sequence[tuple[str, str]], lo: int = 1,
                             hi: int = 10) -> list[dict[str, Any]]:
        """``expected`` mode: per request, P(rating = r) for r in lo..hi after ``"Rating: [["``
        (renormalised; "10" is "1" followed by "0" where digits are single tokens) ->
        [{rating (expected value), probs {r: p}, mass}]."""
        texts = [self._text(s, u, EXPECTED_RATING_PREFIX) for s, u in requests]
        values = list(range(lo, hi + 1))
        if not 0 <= lo <= hi <= 10:
            raise ValueError(f"rating scale {lo}..{hi}: the 'expected' mode reads 0..10 only")
        ten = hi == 10
        if ten:
            lp, lp1 = self.next_token_logprobs(texts, then="1")
        else:
            lp, lp1 = self.next_token_logprobs(texts), None
        digit = [self._token_id(str(d)) for d in range(10)]
        out = []
        for i in range(len(texts)):
            p = {}
            for v in values:
                if v == 10:
                    p[v] = float(lp[i, digit[1]].exp() * lp1[i, digit[0]].exp())
                elif v == 1 and ten:
                    p[v] = float(lp[i, digit[1]].exp() * (1 - lp1[i, digit[0]].exp()))
                else:
                    p[v] = float(lp[i, digit[v]].exp())
            mass = sum(p.values())
            probs = {v: x / mass for v, x in p.items()} if mass > 0 else {}
            out.append({"rating": sum(v * x for v, x in probs.items()) if probs else float("nan"),
                        "probs": {str(v): round(x, 6) for v, x in probs.items()},
                        "mass": mass})
        return out

    def verdict_distributions(self, requests: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """``expected`` mode: per request, P(A), P(B), P(C) after ``"Final verdict: [["``
        (renormalised) -> [{probs {A, B, C}, mass}]."""
        lp = self.next_token_logprobs([self._text(s, u, EXPECTED_VERDICT_PREFIX)
                                       for s, u in requests])
        ids = {c: self._token_id(c) for c in "ABC"}
        out = []
        for i in range(len(requests)):
            p = {c: float(lp[i, t].exp()) for c, t in ids.items()}
            mass = sum(p.values())
            out.append({"probs": {c: x / mass for c, x in p.items()} if mass > 0 else {},
                        "mass": mass})
        return out

    def complete(self, system: str, user: str) -> str:
        return self.complete_many([(system, user)])[0]

    def complete_many(self, requests: Sequence[tuple[str, str]]) -> list[str]:
        return self._generate([self._text(s, u) for s, u in requests], self.max_new_tokens)

    def continue_many(self, requests: Sequence[tuple[str, str, str]],
                      max_new_tokens: int = 4) -> list[str]:
        """Continue the assistant turn from a given prefix: (system, user, prefix) -> text."""
        return self._generate([self._text(s, u, p) for s, u, p in requests], max_new_tokens)


class OpenAIJudge:
    """OpenAI-compatible chat-completions endpoint (env-configured; urllib, no extra deps).

    ``complete_many`` sends up to ``workers`` requests at once (threads; env
    ``WORKBENCH_JUDGE_WORKERS``), retries connection errors, timeouts, 408/409/429 and 5xx up to
    ``max_retries`` times with exponential backoff (``backoff * 2**attempt`` seconds plus
    jitter, or the server's ``Retry-After``), and fails at once, in one line, on other 4xx.
    Finished judgments are cached in a jsonl file (``cache``: a path, ``None`` = env
    ``WORKBENCH_JUDGE_CACHE`` or ``<workbench cache>/judgments/<model>.jsonl``, ``False`` = off)
    keyed by a sha256 of model, max_tokens, system and user text, so a re-run pays only for
    judgments it has not made yet.
    """

    RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 model: str | None = None, timeout: float = 120.0, max_tokens: int = 512, *,
                 workers: int | None = None, max_retries: int = 5, backoff: float = 1.0,
                 cache: str | os.PathLike | bool | None = None):
        self.base_url = (base_url or os.environ.get("WORKBENCH_JUDGE_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ValueError("OpenAIJudge needs base_url or WORKBENCH_JUDGE_BASE_URL")
        self.api_key = api_key or os.environ.get("WORKBENCH_JUDGE_API_KEY", "")
        self.name = model or os.environ.get("WORKBENCH_JUDGE_MODEL", "gpt-4")
        self.timeout, self.max_tokens = timeout, max_tokens
        self.workers = max(1, int(workers or os.environ.get("WORKBENCH_JUDGE_WORKERS", 8)))
        self.max_retries, self.backoff = max_retries, backoff
        self.requests_sent = 0  # HTTP requests made, retries included
        self._lock = threading.Lock()
        self.cache_path = self._cache_path(cache)
        self._cache = _read_cache(self.cache_path) if self.cache_path else {}

    def _cache_path(self, cache) -> Path | None:
        if cache is False:
            return None
        if cache is None or cache is True:
            env = os.environ.get("WORKBENCH_JUDGE_CACHE")
            if env:
                return Path(env).expanduser()
            from workbench.common.models import cache_root
            slug = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower()
            return cache_root() / "judgments" / f"{slug}.jsonl"
        return Path(cache).expanduser()

    def key(self, system: str, user: str) -> str:
        blob = json.dumps([self.name, self.max_tokens, system, user], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, system: str, user: str) -> str:
        return self.complete_many([(system, user)])[0]

    def complete_many(self, requests: Sequence[tuple[str, str]]) -> list[str]:
        keys = [self.key(s, u) for s, u in requests]
        todo = {k: r for k, r in zip(keys, requests, strict=True) if k not in self._cache}
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
                done = dict(zip(todo, pool.map(lambda r: self._post(*r), todo.values()),
                                strict=True))
            for k, text in done.items():
                self._remember(k, text)
        return [self._cache[k] for k in keys]

    def _remember(self, key: str, text: str) -> None:
        with self._lock:
            self._cache[key] = text
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "model": self.name, "content": text},
                                       ensure_ascii=False) + "\n")

    def _post(self, system: str, user: str) -> str:
        body = {"model": self.name, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": user}]}
        data = json.dumps(body).encode()
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
            wait = None
            try:
                with self._lock:
                    self.requests_sent += 1
                with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310
                    return json.loads(r.read())["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as e:
                if e.code not in self.RETRY_STATUS:
                    detail = e.read()[:200].decode("utf-8", "replace").replace("\n", " ")
                    raise ValueError(f"judge endpoint {url}: HTTP {e.code} {e.reason}: "
                                     f"{detail}") from None
                err = f"HTTP {e.code}"
                wait = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                err = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
                raise ValueError(f"judge endpoint {url}: unexpected response ({type(e).__name__}: "
                                 f"{e})") from None
            if attempt == self.max_retries:
                raise ValueError(f"judge endpoint {url}: {err} after {attempt + 1} attempts")
            delay = wait if wait is not None else self.backoff * 2 ** attempt
            delay += random.uniform(0, 0.1 * self.backoff)
            log.warning("judge endpoint: %s; retry %d/%d in %.1f s", err, attempt + 1,
                        self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _read_cache(path: Path) -> dict[str, str]:
    """The finished judgments of a cache file (a torn last line is skipped)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[row["key"]] = row["content"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return out


def make_judge(kind: str = "auto", name: str | None = None, mode: str = "generate", *,
               max_new_tokens: int | None = None, batch_size: int | None = None,
               **kw: Any) -> Judge:
    """``auto`` (endpoint if WORKBENCH_JUDGE_BASE_URL set, else local), ``hf``, ``openai``.
    ``mode`` (``JUDGE_MODES``), ``max_new_tokens`` and ``batch_size`` are local-judge options
    (None: HFJudge's defaults); an endpoint ignores them and always generates. ``kw`` go to the
    judge class."""
    if mode not in JUDGE_MODES:
        raise ValueError(f"judge mode must be one of {', '.join(JUDGE_MODES)}, got {mode!r}")
    if kind == "auto":
        kind = "openai" if os.environ.get("WORKBENCH_JUDGE_BASE_URL") else "hf"
    if kind == "openai":
        return OpenAIJudge(model=name, **kw)
    if kind == "hf":
        local = {k: v for k, v in (("max_new_tokens", max_new_tokens),
                                   ("batch_size", batch_size)) if v is not None}
        return HFJudge(name or DEFAULT_LOCAL_JUDGE, mode=mode, **local, **kw)
    raise ValueError(f"unknown judge kind {kind!r} (auto, hf, openai)")


def judge_tag(judge: Judge) -> str:
    """Folder-safe name of a judge and its mode, for re-graded outputs (``judgments-<tag>``):
    ``qwen2_5_coder_0_5b_instruct-expected``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", judge.name).strip("_").lower()
    return slug + ("-expected" if getattr(judge, "mode", "generate") == "expected" else "")


def is_weak(judge: Judge) -> bool:
    return isinstance(judge, HFJudge)
