"""Calibration rows as the official code builds them: sample examples, join with "\\n\\n",
tokenize, cut non-overlapping rows of `seq_len`, drop the remainder.

`source`: "sharegpt" (default, offline instruction data via `workbench.data`), "wikitext2",
a local file (.txt: one example per blank-line-separated paragraph; .json/.jsonl: a `text`
field, or alpaca-style instruction/input/output), or any `datasets` name with a `text` column
(e.g. "tatsu-lab/alpaca", needs the Hub cache).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from workbench.eval.ppl import rows_from_text


def _record_text(rec: dict) -> str:
    if "text" in rec and rec["text"]:
        return str(rec["text"])
    if "messages" in rec:
        return "\n".join(str(m.get("content", "")) for m in rec["messages"])
    if "instruction" in rec:
        parts = [rec.get("instruction", ""), rec.get("input", ""), rec.get("output", "")]
        return "\n".join(str(p) for p in parts if p)
    raise ValueError(f"calibration record has no text/messages/instruction field: {list(rec)}")


def calibration_texts(source: str, nsamples: int, seed: int = 42) -> list[str]:
    if nsamples < 1:
        raise ValueError(f"calibration needs at least one sample, got cal_nsamples={nsamples}")
    p = Path(source)
    if source == "sharegpt":
        from workbench.data import load_sharegpt

        texts = [_record_text(r) for r in load_sharegpt(limit=max(4 * nsamples, 64))]
    elif source == "wikitext2":
        from workbench.data import load_wikitext2

        texts = [t for t in load_wikitext2("validation")["text"] if t.strip()]
    elif p.exists():
        raw = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            texts = [_record_text(json.loads(x)) for x in raw.splitlines() if x.strip()]
        elif p.suffix == ".json":
            texts = [_record_text(r) for r in json.loads(raw)]
        else:
            texts = [t for t in raw.split("\n\n") if t.strip()]
    else:
        import datasets

        ds = datasets.load_dataset(source, split="train")
        texts = [_record_text(r) for r in ds]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"calibration set {source!r} is empty")
    rng = random.Random(seed)
    return rng.sample(texts, min(nsamples, len(texts)))


def calibration_rows(tokenizer, source: str, nsamples: int, seq_len: int, seed: int = 42,
                     max_rows: int | None = None) -> torch.Tensor:
    texts = calibration_texts(source, nsamples, seed)
    try:
        return rows_from_text(tokenizer, "\n\n".join(texts), seq_len, max_rows)
    except ValueError as exc:
        raise ValueError(f"calibration set {source!r} is empty after cutting: {exc}") from None
