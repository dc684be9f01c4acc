"""FuseChat fusion targets: bytes of our sparse batch vs the official dense collator's targets.

    .venv/bin/python benchmarks/fusion_targets_memory.py [--batch 4] [--length 2048]
        [--vocab 32000] [--k 10] [--sources 1] [--no-dense]

The official `DataCollatorForDistill` builds, per batch, one dense bf16 ``B × max_length × V``
tensor for the pivot and one per aligned source, then the trainer picks one (MinCE). Ours
selects first and keeps only the chosen candidate's ``B × L × K`` ids (int64) and probs (fp32).
Prints the figure from shapes/dtypes, then the bytes of a real collated batch (synthetic
representations in the formats.py shape) and of the dense tensors actually allocated (the
official construction, vectorised; `--no-dense` skips allocating them).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("WORKBENCH_PROGRESS", "0")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--sources", type=int, default=1, help="aligned sources per target")
    ap.add_argument("--no-dense", action="store_true")
    a = ap.parse_args()

    from workbench.fusion.train import (
        FusionCollator,
        FusionDataset,
        batch_nbytes,
        dense_target_bytes,
        dense_targets,
        sparse_target_bytes,
        synthetic_representations,
        topk_distribution,
    )

    cands = 1 + a.sources
    dense = dense_target_bytes(a.batch, a.length, a.vocab, candidates=cands)
    sparse = sparse_target_bytes(a.batch, a.length, a.k)
    print(f"shapes: B={a.batch} L={a.length} V={a.vocab} K={a.k}, {cands} candidates")
    print(f"  official dense targets (bf16, {cands} x B x L x V): {dense:,} B = {_mb(dense)}")
    print(f"  ours (chosen candidate, int64 ids + fp32 probs, B x L x K): {sparse:,} B = "
          f"{_mb(sparse)}  -> {dense / sparse:,.0f}x less")

    pivot = synthetic_representations(a.batch, a.length, a.vocab, a.k, seed=0)
    srcs = []
    for j in range(a.sources):
        s = synthetic_representations(a.batch, a.length, a.vocab, a.k, seed=j + 1, aligned=True)
        srcs.append(s.map(lambda r, i: {"input_ids": pivot[i]["input_ids"]}, with_indices=True))
    ds = FusionDataset(pivot, srcs)
    feats = [ds[i] for i in range(a.batch)]
    t0 = time.perf_counter()
    batch = FusionCollator(pad_token_id=0, vocab_size=a.vocab)(feats)
    t_sparse = time.perf_counter() - t0
    tb = batch_nbytes(batch, ("target_ids", "target_probs"))
    print(f"measured: our collated batch targets {tb:,} B = {_mb(tb)} "
          f"(whole batch incl. input_ids/labels/mask {_mb(batch_nbytes(batch))}), "
          f"collate {t_sparse:.2f}s")
    if a.no_dense:
        return
    t0 = time.perf_counter()
    held = []
    for c in range(cands):
        ids = torch.tensor([f["candidates"][c][0] for f in feats])
        logits = torch.tensor([f["candidates"][c][1] for f in feats])
        sid, probs, _ = topk_distribution(ids, logits)
        held.append(dense_targets(sid, probs, a.vocab, dtype=torch.bfloat16))
    t_dense = time.perf_counter() - t0
    db = sum(t.numel() * t.element_size() for t in held)
    print(f"measured: dense targets allocated {db:,} B = {_mb(db)}, built in {t_dense:.2f}s "
          f"(vectorised scatter; the official collator loops in Python) -> "
          f"{db / tb:,.0f}x our batch targets")


if __name__ == "__main__":
    main()
