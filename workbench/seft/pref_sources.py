"""Preference data for SEFT from its real sources, as rows of prompt / chosen_response /
rejected_response (the shape :func:`~workbench.seft.reviser_data.build_reviser_examples` reads).

Shapes understood, per row (a ``datasets`` name for users who are online, or a local .json/.jsonl):

- pairs with text:      ``prompt``, ``chosen``/``rejected`` (or ``chosen_response``/...) strings;
- UltraFeedback binarized (``HuggingFaceH4/ultrafeedback_binarized``, split ``train_prefs``):
  ``prompt`` string, ``chosen``/``rejected`` message lists (user turn, assistant turn); the last
  assistant message is the response;
- Nectar (``berkeley-nest/Nectar``, split ``train``): ``prompt`` in Anthropic's
  "\\n\\nHuman: ... \\n\\nAssistant: " format and ``answers`` = list of {answer, model, rank}
  (rank 1 = best, GPT-4's 7-wise ranking). Only single-turn prompts are used. The pair is the best
  answer vs the worst (``ranked="worst"``) or vs each lower-ranked one (``ranked="each"``;
  UNVERIFIED which the paper used).

A row that cannot give a pair (missing field, multi-turn Nectar prompt, all ranks tied) comes out
with ``chosen_response``/``rejected_response`` None, so the reviser data builder skips and counts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DATASETS = {"nectar": ("berkeley-nest/Nectar", "train"),
            "ultrafeedback": ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")}
RANKED = ("worst", "each")


def _missing(prompt: Any) -> dict[str, Any]:
    return {"prompt": prompt if isinstance(prompt, str) else None, "chosen_response": None,
            "rejected_response": None}


def hh_user_turn(prompt: str) -> str | None:
    """The user's text of a single-turn Anthropic-format prompt ("\\n\\nHuman: ... \\n\\nAssistant:"),
    None for a multi-turn one. A prompt without the markers is returned as it is."""
    if "Human:" not in prompt:
        return prompt.strip()
    if prompt.count("Human:") != 1:
        return None
    return prompt.split("Human:", 1)[1].rsplit("Assistant:", 1)[0].strip()


def _last_assistant(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "assistant":
            c = m.get("content")
            return c if isinstance(c, str) else None
    return None


def _first_user(messages: Any) -> str | None:
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, Mapping) and m.get("role") == "user":
                c = m.get("content")
                return c if isinstance(c, str) else None
    return None


def ultrafeedback_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """UltraFeedback binarized row -> pair (chosen/rejected = message lists)."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str):
        prompt = _first_user(row.get("chosen"))
    return {"prompt": prompt, "chosen_response": _last_assistant(row.get("chosen")),
            "rejected_response": _last_assistant(row.get("rejected"))}


def nectar_pairs(row: Mapping[str, Any], ranked: str = "worst") -> list[dict[str, Any]]:
    """Nectar row -> pairs: best-ranked answer (rank 1 = best) vs the worst, or vs each lower one."""
    if ranked not in RANKED:
        raise ValueError(f"ranked must be one of {RANKED}, got {ranked!r}")
    raw_prompt = row.get("prompt")
    prompt = hh_user_turn(raw_prompt) if isinstance(raw_prompt, str) else None
    answers = [a for a in row.get("answers") or []
               if isinstance(a, Mapping) and isinstance(a.get("answer"), str)
               and isinstance(a.get("rank"), int | float)]
    if prompt is None or len(answers) < 2:
        return [_missing(prompt)]
    answers = sorted(answers, key=lambda a: float(a["rank"]))
    best = answers[0]
    lower = [a for a in answers[1:] if float(a["rank"]) > float(best["rank"])]
    if not lower:
        return [_missing(prompt)]
    chosen = lower[-1:] if ranked == "worst" else lower
    return [{"prompt": prompt, "chosen_response": best["answer"], "rejected_response": a["answer"]}
            for a in chosen]


def to_pairs(rows: Iterable[Mapping[str, Any]], ranked: str = "worst") -> list[dict[str, Any]]:
    """Any supported shape (detected per row) -> prompt / chosen_response / rejected_response."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            out.append(_missing(None))
        elif "answers" in row:
            out += nectar_pairs(row, ranked)
        elif isinstance(row.get("chosen"), list) or isinstance(row.get("rejected"), list):
            out.append(ultrafeedback_pair(row))
        else:
            r = dict(row)
            for k in ("chosen", "rejected"):
                if r.get(f"{k}_response") is None and isinstance(r.get(k), str):
                    r[f"{k}_response"] = r[k]
            if isinstance(r.get("prompt"), str) and "Human:" in r["prompt"]:
                r["prompt"] = hh_user_turn(r["prompt"])
            out.append(r)
    return out


def load_pref_pairs(source: str, *, split: str | None = None, limit: int | None = None,
                    ranked: str = "worst") -> list[dict[str, Any]]:
    """Pairs from a local .json/.jsonl file, ``nectar`` / ``ultrafeedback`` (their Hub names), or
    any other ``datasets`` name (downloaded by ``datasets.load_dataset(name, split=...)``; needs
    network the first time). ``limit`` caps the source rows read."""
    path = Path(source)
    if path.is_file() and path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"pref_data {source!r}: a file must be .json or .jsonl")
    if path.suffix in (".json", ".jsonl"):
        if not path.is_file():
            raise ValueError(f"pref_data {source!r}: no such file")
        rows = _read_rows(path)
        return to_pairs(rows[:limit] if limit else rows, ranked)
    name, default_split = DATASETS.get(source, (source, "train"))
    import datasets
    try:
        ds = datasets.load_dataset(name, split=split or default_split)
    except Exception as e:  # offline, unknown name, unknown split: one clear line
        raise ValueError(f"pref_data {source!r}: could not load dataset {name!r} split "
                         f"{split or default_split!r} ({type(e).__name__}: {e})") from None
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    return to_pairs(ds, ranked)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """A .jsonl (one object a line) or a .json list of objects; bad input -> ValueError naming it."""
    if path.suffix == ".jsonl":
        from workbench.data.mtbench import _read_jsonl
        try:
            rows = _read_jsonl(path)
        except ValueError as e:
            raise ValueError(f"pref_data {e}") from None
    else:
        import json
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"pref_data {path.name}: bad JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(rows, list):
            raise ValueError(f"pref_data {path.name}: a .json file must hold a list of records")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"pref_data {path.name}: record {i} is not a JSON object")
    return rows
