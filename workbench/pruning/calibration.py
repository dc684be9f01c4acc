"""Calibration rows for the block search.

The official protocol (MrGGLS/BlockPruner `block_search.py` + `utils.py`), reproduced by
`official_rows` and used whenever every row fits (`max_rows=None`):
1. Alpaca's `train` split -> `train_test_split(test_size=0.2, seed=42)`; its test part ->
   `train_test_split(test_size=0.5, seed=42)`; the first half is the calibration pool (a held-out
   10 %; `heldout=True`, `official_heldout`);
2. `random.sample(range(len(pool)), nsamples)` right after `set_seed(42)` (a fresh
   `random.Random(42)` draws the same indices without touching the global generator);
3. the `text` fields of those examples joined with "\\n\\n", tokenized once with the tokenizer's
   defaults (Llama's adds BOS at the start), cut into non-overlapping rows of `seq_len` (2048),
   the remainder dropped. The official search scores them in batches of 2, in bf16.

When rows must be capped (`max_rows`, the small profiles), a prefix of that stream would be one
or two long documents. `spread_rows` instead keeps every sampled document: each document is
tokenized on its own and cut to its first `c` tokens, with `c` the smallest cap whose stream
(separators and BOS included) fills `max_rows` rows, so all documents get an equal share of the
budget (shorter ones give theirs to the rest), in the sampled order, joined by the "\\n\\n"
tokens. `Calibration.documents` counts the documents that reach the rows, for `metrics.json`.

`source`: "sharegpt" (offline instruction data via `workbench.data`), "wikitext2" (validation),
a local file (.txt: one example per blank-line-separated paragraph; .json/.jsonl: a `text`
field, or alpaca-style instruction/input/output; a `datasets.save_to_disk` folder), or any
`datasets` name with a `text` column (e.g. "tatsu-lab/alpaca": needs the Hub or its cache;
there is no Alpaca offline here).
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SEP = "\n\n"


@dataclass(frozen=True)
class Calibration:
    rows: torch.Tensor  # [n_rows, seq_len] token ids
    documents: int  # sampled documents that contribute at least one token to the rows
    sampled: int  # documents sampled
    doc_tokens: int | None  # per-document token cap (None: whole documents, official)
    layout: str  # "official" (join and cut) | "spread" (capped rows over every document)
    row_documents: tuple[int, ...] = ()  # distinct documents per row

    def info(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "seq_len": int(self.rows.shape[1]),
                "documents": self.documents, "sampled": self.sampled,
                "doc_tokens": self.doc_tokens, "layout": self.layout,
                "documents_per_row": list(self.row_documents)}


def _record_text(rec: dict) -> str:
    if "text" in rec and rec["text"]:
        return str(rec["text"])
    if "messages" in rec:
        return "\n".join(str(m.get("content", "")) for m in rec["messages"])
    if "instruction" in rec:
        parts = [rec.get("instruction", ""), rec.get("input", ""), rec.get("output", "")]
        return "\n".join(str(p) for p in parts if p)
    raise ValueError(f"calibration record has no text/messages/instruction field: {list(rec)}")


def official_heldout(texts: list[str], seed: int = 42) -> list[str]:
    """The official 10 % held-out pool: split 0.2 off (seed 42), keep the first half of it."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": list(texts)})
    test = ds.train_test_split(test_size=0.2, seed=seed)["test"]
    return list(test.train_test_split(test_size=0.5, seed=seed)["train"]["text"])


def _pool(source: str, nsamples: int) -> list[str]:
    p = Path(source)
    if source == "sharegpt":
        from workbench.data import load_sharegpt

        return [_record_text(r) for r in load_sharegpt(limit=max(4 * nsamples, 64))]
    if source == "wikitext2":
        from workbench.data import load_wikitext2

        return [t for t in load_wikitext2("validation")["text"] if t.strip()]
    if p.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(p))
        ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
        return [_record_text(r) for r in ds]
    if p.exists():
        raw = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            return [_record_text(json.loads(x)) for x in raw.splitlines() if x.strip()]
        if p.suffix == ".json":
            return [_record_text(r) for r in json.loads(raw)]
        return [t for t in raw.split(SEP) if t.strip()]
    import datasets

    try:
        ds = datasets.load_dataset(source, split="train")
    except Exception as exc:  # noqa: BLE001 - one line naming the input
        raise ValueError(f"calibration set {source!r}: not a local file/folder and "
                         f"`datasets` cannot load it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return [_record_text(r) for r in ds]


def calibration_texts(source: str, nsamples: int, seed: int = 42,
                      heldout: bool = False) -> list[str]:
    """`nsamples` texts drawn as the official code does (`random.sample` of indices, seed 42)."""
    if nsamples < 1:
        raise ValueError(f"calibration needs at least one sample, got cal_nsamples={nsamples}")
    texts = _pool(source, nsamples)
    if heldout:
        texts = official_heldout(texts, seed)
    if not any(t.strip() for t in texts):
        raise ValueError(f"calibration set {source!r} is empty")
    idx = random.Random(seed).sample(range(len(texts)), min(nsamples, len(texts)))
    return [texts[i] for i in idx]


def _prefix_ids(tokenizer) -> list[int]:
    """What the tokenizer's defaults put before the text (BOS for Llama), as the official."""
    with_sp = tokenizer("a", add_special_tokens=True).input_ids
    without = tokenizer("a", add_special_tokens=False).input_ids
    return list(with_sp[: len(with_sp) - len(without)]) if with_sp[-len(without):] == without \
        else []


def official_rows(tokenizer, texts: list[str], seq_len: int) -> Calibration:
    """The official rows: join with "\\n\\n", tokenize with defaults, cut, drop the remainder."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    joined = SEP.join(texts)
    enc = tokenizer(joined, return_offsets_mapping=getattr(tokenizer, "is_fast", False))
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    n = ids.numel() // seq_len
    if n == 0:
        raise ValueError(f"calibration text gives {ids.numel()} tokens: not one full row of "
                         f"{seq_len}")
    docs: list[set[int]] = []
    if "offset_mapping" in enc:
        starts, pos = [], 0
        for t in texts:
            starts.append(pos)
            pos += len(t) + len(SEP)
        doc_of = [bisect.bisect_right(starts, a) - 1 if b > a else -1
                  for a, b in enc["offset_mapping"][: n * seq_len]]
        docs = [{d for d in doc_of[r * seq_len:(r + 1) * seq_len] if d >= 0} for r in range(n)]
        used = len(set().union(*docs))
    else:
        used = len(texts)
    return Calibration(ids[: n * seq_len].view(n, seq_len), used, len(texts), None, "official",
                       tuple(len(d) for d in docs))


def spread_rows(tokenizer, texts: list[str], seq_len: int, max_rows: int) -> Calibration:
    """`max_rows` rows over every document: each cut to an equal share of the token budget."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    texts = [t for t in texts if t.strip()]
    budget = max_rows * seq_len
    # a document's share never exceeds the whole budget: tokenize at most that much of it
    toks = [tokenizer(t[: 16 * budget], add_special_tokens=False).input_ids for t in texts]
    sep = tokenizer(SEP, add_special_tokens=False).input_ids
    head = _prefix_ids(tokenizer)
    fixed = len(head) + len(sep) * max(0, len(toks) - 1)

    def length(c: int) -> int:
        return fixed + sum(min(len(x), c) for x in toks)

    longest = max((len(x) for x in toks), default=0)
    if length(longest) < budget:  # everything fits: whole documents, rows as many as there are
        cap = longest
    else:  # smallest cap that fills the budget (bisection; length() is monotone in c)
        lo, hi = 0, longest
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if length(mid) < budget else (lo, mid)
        cap = lo
    # cap - 1 for everyone, + 1 for the first documents that have more, until the budget is
    # exactly full: the cut then falls at the end of the last document, never drops one
    extra = max(0, budget - length(cap - 1)) if cap else 0
    ids: list[int] = list(head)
    doc_of: list[int] = [-1] * len(head)
    for d, x in enumerate(toks):
        take = min(len(x), cap - 1) if cap else 0
        if extra and len(x) >= cap:
            take, extra = take + 1, extra - 1
        if d:
            ids += sep
            doc_of += [-1] * len(sep)
        ids += x[:take]
        doc_of += [d] * take
    n = min(max_rows, len(ids) // seq_len)
    if n == 0:
        raise ValueError(f"calibration text gives {len(ids)} tokens: not one full row of "
                         f"{seq_len}")
    docs = [{d for d in doc_of[r * seq_len:(r + 1) * seq_len] if d >= 0} for r in range(n)]
    return Calibration(torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len),
                       len(set().union(*docs)), len(texts), cap, "spread",
                       tuple(len(d) for d in docs))


def calibration(tokenizer, source: str, nsamples: int, seq_len: int, seed: int = 42,
                max_rows: int | None = None, heldout: bool = False) -> Calibration:
    """Official rows when uncapped; with `max_rows`, rows spread over every sampled document."""
    texts = calibration_texts(source, nsamples, seed, heldout)
    try:
        if max_rows is None:
            return official_rows(tokenizer, texts, seq_len)
        return spread_rows(tokenizer, texts, seq_len, max_rows)
    except ValueError as exc:
        raise ValueError(f"calibration set {source!r} is empty after cutting: {exc}") from None


def calibration_rows(tokenizer, source: str, nsamples: int, seq_len: int, seed: int = 42,
                     max_rows: int | None = None, heldout: bool = False) -> torch.Tensor:
    return calibration(tokenizer, source, nsamples, seq_len, seed, max_rows, heldout).rows
