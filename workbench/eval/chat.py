"""Chat evaluation with a pluggable LLM judge (MT-Bench single-answer and pairwise grading).

Judges (all expose ``complete(system: str, user: str) -> str``):
- ``HFJudge(name="qwen2.5-coder-0.5b-instruct")``: a local HF chat model, greedy decoding. The
  offline default is the largest local chat model, a 0.5B coder model: it is a WEAK judge; outputs
  carry ``JUDGE_NOTE`` and ``judge_note`` fields saying so.
- ``OpenAIJudge()``: any OpenAI-compatible ``/chat/completions`` endpoint, configured by
  ``WORKBENCH_JUDGE_BASE_URL``, ``WORKBENCH_JUDGE_API_KEY``, ``WORKBENCH_JUDGE_MODEL`` (urllib only).
- ``make_judge(kind="auto")``: endpoint when ``WORKBENCH_JUDGE_BASE_URL`` is set, else local HF.

Grading uses the MT-Bench judge prompts (``workbench.data.load_judge_prompts()``; names
``single-v1`` and ``pair-v2``), parsing ``[[rating]]`` (1–10) and ``[[A]]``/``[[B]]``/``[[C]]``.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

WEAK_JUDGE_NOTE = ("Offline judge is a small local model (default qwen2.5-coder-0.5b-instruct): its "
                   "scores are weak, noisy evidence, not comparable to GPT-4 MT-Bench numbers.")
DEFAULT_LOCAL_JUDGE = "qwen2.5-coder-0.5b-instruct"

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_FALLBACK = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


class Judge(Protocol):
    name: str

    def complete(self, system: str, user: str) -> str: ...


def parse_rating(text: str | None, lo: float = 1.0, hi: float = 10.0) -> float:
    """``[[7]]`` -> 7.0 (also ``[7]`` as MT-Bench's fallback); missing/out of range -> NaN."""
    if not text:
        return float("nan")
    m = _RATING.search(text) or _RATING_FALLBACK.search(text)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v if lo <= v <= hi else float("nan")


def parse_verdict(text: str | None) -> str:
    """``[[A]]``/``[[B]]``/``[[C]]`` -> "A"/"B"/"tie"; anything else -> "error"."""
    if not text:
        return "error"
    found = set(_VERDICT.findall(text))
    if len(found) != 1:
        return "error"
    v = found.pop()
    return "tie" if v == "C" else v


class HFJudge:
    """Local HF chat model judge (greedy)."""

    def __init__(self, name: str = DEFAULT_LOCAL_JUDGE, max_new_tokens: int = 256, model=None,
                 tokenizer=None):
        self.name = name
        self.max_new_tokens = max_new_tokens
        self._model, self._tok = model, tokenizer

    def _load(self):
        if self._model is None:
            from workbench.common import load_causal_lm
            self._model, self._tok = load_causal_lm(self.name)
        return self._model, self._tok

    def complete(self, system: str, user: str) -> str:
        import torch
        model, tok = self._load()
        msgs = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": user}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(
            next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class OpenAIJudge:
    """OpenAI-compatible chat-completions endpoint (env-configured; urllib, no extra deps)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 model: str | None = None, timeout: float = 120.0, max_tokens: int = 512):
        self.base_url = (base_url or os.environ.get("WORKBENCH_JUDGE_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ValueError("OpenAIJudge needs base_url or WORKBENCH_JUDGE_BASE_URL")
        self.api_key = api_key or os.environ.get("WORKBENCH_JUDGE_API_KEY", "")
        self.name = model or os.environ.get("WORKBENCH_JUDGE_MODEL", "gpt-4")
        self.timeout, self.max_tokens = timeout, max_tokens

    def complete(self, system: str, user: str) -> str:
        body = {"model": self.name, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": user}]}
        req = urllib.request.Request(f"{self.base_url}/chat/completions",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310
            return json.loads(r.read())["choices"][0]["message"]["content"]


def make_judge(kind: str = "auto", name: str | None = None, **kw: Any) -> Judge:
    """``auto`` (endpoint if WORKBENCH_JUDGE_BASE_URL set, else local), ``hf``, ``openai``."""
    if kind == "auto":
        kind = "openai" if os.environ.get("WORKBENCH_JUDGE_BASE_URL") else "hf"
    if kind == "openai":
        return OpenAIJudge(model=name, **kw)
    if kind == "hf":
        return HFJudge(name or DEFAULT_LOCAL_JUDGE, **kw)
    raise ValueError(f"unknown judge kind {kind!r} (auto, hf, openai)")


def is_weak(judge: Judge) -> bool:
    return isinstance(judge, HFJudge)


def _prompts(judge_prompts: dict | None) -> dict:
    if judge_prompts is None:
        from workbench.data import load_judge_prompts
        judge_prompts = load_judge_prompts()
    return judge_prompts


def grade_single(judge: Judge, question: str, answer: str, *, judge_prompts: dict | None = None,
                 prompt_name: str = "single-v1") -> tuple[float, str]:
    """MT-Bench single-answer grading -> (rating 1..10 or NaN, raw judgment)."""
    jp = _prompts(judge_prompts)[prompt_name]
    user = jp["prompt_template"].format(question=question, answer=answer)
    raw = judge.complete(jp.get("system_prompt", ""), user)
    return parse_rating(raw), raw


def grade_pair(judge: Judge, question: str, answer_a: str, answer_b: str, *,
               judge_prompts: dict | None = None, prompt_name: str = "pair-v2") -> tuple[str, str]:
    """MT-Bench pairwise grading -> ("A"|"B"|"tie"|"error", raw judgment)."""
    jp = _prompts(judge_prompts)[prompt_name]
    user = jp["prompt_template"].format(question=question, answer_a=answer_a, answer_b=answer_b)
    raw = judge.complete(jp.get("system_prompt", ""), user)
    return parse_verdict(raw), raw


def win_rate(judge: Judge, questions: Sequence[str], model_answers: Sequence[str],
             baseline_answers: Sequence[str], *, judge_prompts: dict | None = None,
             swap: bool = True) -> dict[str, Any]:
    """Pairwise win rate of model vs baseline; with ``swap`` each pair is judged in both orders
    (position bias) and the two verdicts are averaged (win=1, tie=0.5, loss=0; errors dropped)."""
    scores: list[float] = []
    counts = {"win": 0, "tie": 0, "loss": 0, "error": 0}
    for q, a, b in zip(questions, model_answers, baseline_answers, strict=True):
        orders = [(a, b, "A"), (b, a, "B")] if swap else [(a, b, "A")]
        for x, y, ours in orders:
            v, _ = grade_pair(judge, q, x, y, judge_prompts=judge_prompts)
            if v == "error":
                counts["error"] += 1
                continue
            s = 0.5 if v == "tie" else float(v == ours)
            counts["win" if s == 1 else "tie" if s == 0.5 else "loss"] += 1
            scores.append(s)
    return {"win_rate": sum(scores) / len(scores) if scores else float("nan"), **counts,
            "n_judgments": len(scores), "judge": judge.name,
            "judge_note": WEAK_JUDGE_NOTE if is_weak(judge) else ""}


def mtbench_answers(generate: Callable[[list[dict[str, str]]], str], questions: Sequence[dict],
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Two-turn MT-Bench answers. ``generate(messages) -> str`` is the model's chat function."""
    out = []
    for q in list(questions)[: limit if limit is not None else None]:
        msgs: list[dict[str, str]] = []
        answers = []
        for turn in q["turns"]:
            msgs.append({"role": "user", "content": turn})
            ans = generate(msgs)
            msgs.append({"role": "assistant", "content": ans})
            answers.append(ans)
        out.append({"question_id": q["question_id"], "category": q.get("category"),
                    "turns": list(q["turns"]), "answers": answers})
    return out


def mtbench_score(judge: Judge, answers: Sequence[dict[str, Any]], *,
                  judge_prompts: dict | None = None) -> dict[str, Any]:
    """Single-answer grading of first-turn answers (single-v1). Mean over parsed ratings."""
    ratings = []
    for a in answers:
        r, _ = grade_single(judge, a["turns"][0], a["answers"][0], judge_prompts=judge_prompts)
        ratings.append(r)
    ok = [r for r in ratings if not math.isnan(r)]
    return {"score": sum(ok) / len(ok) if ok else float("nan"), "n": len(ratings),
            "n_unparsed": len(ratings) - len(ok), "ratings": ratings, "judge": judge.name,
            "judge_note": WEAK_JUDGE_NOTE if is_weak(judge) else ""}
