"""FuseChat step 1: teacher representations (papers.md §1.a step 1; format in `formats.py`).

Every model scores the SAME dialogues, rendered ONCE as text with the pivot's chat template
(official: `--conv_temp openchat_3.5` for every model); each model tokenizes that text with its own
tokenizer. Assistant tokens are found by character spans: the template is rendered incrementally
(prefix up to the assistant header, then the prefix with the assistant turn), and a token is an
assistant token when its `offset_mapping` span overlaps an assistant span. Teacher forcing (no
generation), batched by length under a token budget; per position we keep the top-K logits (fp16)
and ids (int32), the gold next-token CE, and per sequence `metric_ce` (mean CE over positions whose
next token is an assistant token).

Dialogues are cut to `max_length` tokens of EVERY model at a common character position, so all
representations cover exactly the same text (the official code truncates each tokenizer at 2048
independently; its data was pre-split to <= 2048 tokens, so the difference only matters on long
dialogues).

Shards (`shard-00000`, ...) are `datasets` folders written atomically (temp folder, then rename);
a restarted run skips finished shards and recomputes the rest bit-identically (the batches inside a
shard depend only on the shard's dialogues).

>>> dialogues = prepare_dialogues(rows, pivot_tok, [tok_a, tok_b], max_length=512)  # doctest: +SKIP
>>> compute_representations("gemma3-270m", dialogues, out / "gemma3-270m", top_k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track

# chat data and dialogues live in workbench.fusion.dialogues; re-exported here for callers of step 1
from workbench.fusion.dialogues import (  # noqa: F401
    Dialogue,
    assistant_labels,
    dialogues_fingerprint,
    drop_leading_assistant,
    extra_count_dialogues,
    id_pairs,
    load_chat_rows,
    load_dialogues,
    prepare_dialogues,
    render_dialogue,
    resolve_chat_template,
    save_dialogues,
    split_dialogues,
    tokenize_dialogue,
)

log = logging.getLogger(__name__)

META = "meta.json"
SHARD_PREFIX = "shard-"




# ------------------------------------------------------------------------------------------
# kernels: batching, scoring
# ------------------------------------------------------------------------------------------
def length_batches(lengths: Sequence[int], max_batch: int, token_budget: int) -> list[list[int]]:
    """Indices grouped longest first so that len(batch) * longest <= token_budget (>= 1 each)."""
    if max_batch < 1 or token_budget < 1:
        raise ValueError("max_batch and token_budget must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1 > max_batch or (len(cur) + 1) * longest > token_budget):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def sequence_metric_ce(gold_ce: Sequence[float], labels: Sequence[int]) -> float:
    """Mean of gold_ce[t] over t whose next token is an assistant token; NaN when there are none."""
    vals = [gold_ce[t] for t in range(len(labels) - 1) if labels[t + 1] != -100]
    return float(sum(vals) / len(vals)) if vals else float("nan")


def output_vocab_size(model: Any) -> int:
    head = model.get_output_embeddings()
    if head is not None and hasattr(head, "weight"):
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def _head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """lm_head on hidden states, with the final logit soft-capping some architectures apply."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def score_batch(model: Any, seqs: Sequence[Sequence[int]], top_k: int, *, pad_id: int = 0,
                chunk_positions: int | None = None, mode: str = "chunked") -> list[dict[str, Any]]:
    """Teacher-forced top-K logits/ids and gold next-token CE for each sequence of a batch.

    `mode="chunked"` runs the decoder once and the lm_head over chunks of positions (memory ~
    chunk x vocab instead of batch x length x vocab); `mode="full"` uses the model's own forward.
    Returns per sequence `topk_ids` (L x K int32), `topk_logits` (L x K float16), `gold_ce` (L,
    float32, last = NaN).
    """
    vocab = output_vocab_size(model)
    if top_k > vocab:
        raise ValueError(f"top_k={top_k} is larger than the model's vocabulary ({vocab})")
    device = next(model.parameters()).device
    lens = [len(s) for s in seqs]
    if min(lens) < 1:
        raise ValueError("score_batch: empty sequence")
    L = max(lens)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[b, : len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    if mode == "full":
        logits_all = model(input_ids=ids, attention_mask=mask).logits.float()
        hidden = None
    else:
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    step = chunk_positions or max(1, (1 << 25) // vocab)
    out = []
    for b, n in enumerate(lens):
        vals, idx, ce = [], [], []
        for a in range(0, n, step):
            e = min(n, a + step)
            lg = logits_all[b, a:e] if hidden is None else _head(model, hidden[b, a:e])
            v, i = lg.topk(top_k, dim=-1)
            vals.append(v.to(torch.float16).cpu())
            idx.append(i.to(torch.int32).cpu())
            gold = torch.full((e - a,), float("nan"))
            m = min(e, n - 1) - a  # positions with a next token
            if m > 0:
                tgt = ids[b, a + 1: a + 1 + m]
                lse = torch.logsumexp(lg[:m], dim=-1)
                gold[:m] = (lse - lg[:m].gather(-1, tgt[:, None])[:, 0]).cpu()
            ce.append(gold)
        out.append({"topk_ids": torch.cat(idx).numpy(), "topk_logits": torch.cat(vals).numpy(),
                    "gold_ce": torch.cat(ce).numpy()})
    return out


def check_head_path(model: Any, seq: Sequence[int], top_k: int) -> str:
    """'chunked' when the decoder + lm_head path reproduces the model's forward, else 'full'."""
    try:
        a = score_batch(model, [seq], top_k, mode="chunked")[0]
    except (AttributeError, TypeError, NotImplementedError) as e:
        log.warning("chunked lm_head path unavailable (%s); using the full forward", e)
        return "full"
    b = score_batch(model, [seq], top_k, mode="full")[0]
    import numpy as np

    ok = np.allclose(a["topk_logits"].astype("float32"), b["topk_logits"].astype("float32"),
                     atol=2e-2, rtol=1e-2) and np.allclose(a["gold_ce"], b["gold_ce"], atol=1e-3,
                                                           equal_nan=True)
    if not ok:
        log.warning("chunked lm_head path differs from the model forward; using the full forward")
    return "chunked" if ok else "full"


# ------------------------------------------------------------------------------------------
# shards on disk
# ------------------------------------------------------------------------------------------
def repr_features(top_k: int):
    from datasets import Features, List, Value

    return Features({
        "id": Value("string"),
        "input_ids": List(Value("int32")),
        "labels": List(Value("int32")),
        "topk_ids": List(List(Value("int32"), length=top_k)),
        "topk_logits": List(List(Value("float16"), length=top_k)),
        "gold_ce": List(Value("float32")),
        "metric_ce": Value("float32"),
    })


def write_shard(rows: Sequence[dict[str, Any]], folder: Path, top_k: int) -> Path:
    """Save rows as a `datasets` folder: into a temp sibling, then one rename."""
    from datasets import Dataset

    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cols = {k: [r[k] for r in rows] for k in repr_features(top_k)}
    Dataset.from_dict(cols, features=repr_features(top_k)).save_to_disk(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def shard_folders(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob(f"{SHARD_PREFIX}*") if p.is_dir())


def load_representations(folder: str | Path):
    """All shards of one model's representation folder as one `Dataset` (meta in `.info`)."""
    from datasets import concatenate_datasets, load_from_disk

    folder = Path(folder)
    if not (folder / META).exists():
        raise ValueError(f"{folder} is not a representation folder (no {META})")
    meta = read_json(folder / META)
    shards = shard_folders(folder)
    if len(shards) != meta["num_shards"]:
        raise ValueError(f"{folder}: {len(shards)} of {meta['num_shards']} shards present "
                         "(unfinished run: run it again to resume)")
    return concatenate_datasets([load_from_disk(str(s)) for s in shards])


def check_same_ids(a: Sequence[str], b: Sequence[str], names: tuple[str, str] = ("a", "b")) -> None:
    """Raise when two representations do not hold the same dialogues in the same order."""
    if list(a) == list(b):
        return
    if len(a) != len(b):
        raise ValueError(f"mismatched data: {names[0]} has {len(a)} rows, {names[1]} has {len(b)}")
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    raise ValueError(f"mismatched data: row {i} is id {a[i]!r} in {names[0]} but {b[i]!r} in "
                     f"{names[1]}")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*.arrow"))


def column_bytes(ds: Any) -> dict[str, int]:
    """Arrow buffer bytes per column (values + offsets + validity) of a loaded dataset."""
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    return {c: int(table.column(c).nbytes) for c in table.column_names}


# ------------------------------------------------------------------------------------------
# one model's representations
# ------------------------------------------------------------------------------------------
def _item_ci(values: list[float]) -> dict | None:
    """95 % CI of a mean over dialogues (t under 20, bootstrap from 20 on), or None without any."""
    from workbench.eval.stats import item_ci
    return item_ci(values).to_dict() if values else None


@dataclass
class ReprStats:
    model: str
    dialogues: int
    tokens: int
    assistant_tokens: int
    mean_metric_ce: float
    bytes: int
    bytes_per_token: float  # the .arrow files on disk, all columns
    topk_bytes_per_token: float  # the topk_ids + topk_logits buffers only
    column_bytes_per_token: dict[str, float]  # Arrow buffer bytes per column / tokens
    seconds: float
    shards_computed: int
    shards_reused: int
    head_path: str
    mean_metric_ce_ci: dict | None = None  # stats.item_ci over dialogues (Estimate.to_dict())


def _plan_shards(dialogues: Sequence[Dialogue], shard_size: int) -> list[list[int]]:
    return [list(range(a, min(a + shard_size, len(dialogues))))
            for a in range(0, len(dialogues), shard_size)]


def compute_representations(model_name: str, dialogues: Sequence[Dialogue], out: str | Path, *,
                            top_k: int = 10, max_length: int = 2048, batch_size: int = 8,
                            token_budget: int = 8192, shard_size: int = 1024,
                            device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                            model: Any = None, tokenizer: Any = None,
                            worker: tuple[int, int] = (0, 1)) -> ReprStats | None:
    """Score `dialogues` with one model into `out/shard-*` (resumable); return its statistics.

    `worker=(i, n)`: this process computes only the shards s with s % n == i (n processes / GPUs
    on one model, like the official 4-way split); it returns None while other workers' shards
    are missing, the statistics once all shards exist.
    """
    i_worker, n_workers = worker
    if not 0 <= i_worker < n_workers:
        raise ValueError(f"worker must be (i, n) with 0 <= i < n, got {worker}")
    from datasets import load_from_disk

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".{SHARD_PREFIX}*.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    fp = dialogues_fingerprint(dialogues)
    meta = {"model": model_name, "top_k": top_k, "max_length": max_length, "data": fp,
            "num_dialogues": len(dialogues), "shard_size": shard_size}
    if (out / META).exists():
        old = read_json(out / META)
        diff = [k for k in meta if k != "num_shards" and old.get(k) != meta[k]]
        if diff:
            raise ValueError(f"{out} holds representations made with other settings ({diff[0]}: "
                             f"{old.get(diff[0])!r} != {meta[diff[0]]!r}); use another run folder")
    plan = _plan_shards(dialogues, shard_size)
    meta["num_shards"] = len(plan)
    write_json(out / META, meta)
    todo = []
    for s, idx in enumerate(plan):
        folder = out / f"{SHARD_PREFIX}{s:05d}"
        if folder.exists():
            have = load_from_disk(str(folder))["id"]
            check_same_ids(have, [dialogues[i].id for i in idx], (f"{folder}", "the data plan"))
        elif s % n_workers == i_worker:
            todo.append(s)
    head_path = "reused"
    if todo:
        if model is None or tokenizer is None:
            from workbench.common.models import load_causal_lm

            model, tokenizer = load_causal_lm(model_name, dtype=dtype, device=device)
        vocab = output_vocab_size(model)
        if top_k > vocab:
            raise ValueError(f"top_k={top_k} is larger than the vocabulary of {model_name} ({vocab})")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # decided on the first dialogue, so a resumed run takes the same path
        first = tokenize_dialogue(dialogues[0], tokenizer, max_length)[0][:64]
        head_path = check_head_path(model, first, top_k)
        for s in track(todo, desc=f"represent {model_name}"):
            idx = plan[s]
            toks = [tokenize_dialogue(dialogues[i], tokenizer, max_length) for i in idx]
            rows: list[dict[str, Any] | None] = [None] * len(idx)
            for batch in length_batches([len(t[0]) for t in toks], batch_size, token_budget):
                scored = score_batch(model, [toks[j][0] for j in batch], top_k, pad_id=pad,
                                     mode=head_path)
                for j, sc in zip(batch, scored, strict=True):
                    ids, labels = toks[j]
                    rows[j] = {"id": dialogues[idx[j]].id, "input_ids": ids, "labels": labels,
                               "topk_ids": sc["topk_ids"], "topk_logits": sc["topk_logits"],
                               "gold_ce": sc["gold_ce"],
                               "metric_ce": sequence_metric_ce(sc["gold_ce"].tolist(), labels)}
            write_shard(rows, out / f"{SHARD_PREFIX}{s:05d}", top_k)
    if len(shard_folders(out)) < len(plan):  # other workers' shards still missing
        log.info("%s: worker %d/%d done; %d of %d shards present", model_name, i_worker,
                 n_workers, len(shard_folders(out)), len(plan))
        return None
    ds = load_representations(out)
    tokens = sum(len(x) for x in ds["input_ids"])
    asst = sum(sum(1 for v in x if v != -100) for x in ds["labels"])
    mces = [m for m in ds["metric_ce"] if m is not None and not math.isnan(m)]
    size = folder_bytes(out)
    cols = column_bytes(ds)
    return ReprStats(
        model=model_name, dialogues=len(ds), tokens=tokens, assistant_tokens=asst,
        mean_metric_ce=float(sum(mces) / len(mces)) if mces else float("nan"), bytes=size,
        bytes_per_token=size / max(tokens, 1),
        topk_bytes_per_token=(cols["topk_ids"] + cols["topk_logits"]) / max(tokens, 1),
        column_bytes_per_token={c: b / max(tokens, 1) for c, b in cols.items()},
        seconds=time.time() - t0, shards_computed=len(todo), shards_reused=len(plan) - len(todo),
        head_path=head_path or "reused", mean_metric_ce_ci=_item_ci(mces))
