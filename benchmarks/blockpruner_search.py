"""BlockPruner greedy search: plain loop (one full forward per candidate and row batch) vs the
exact fast path (cached prefix hidden states, candidates in likely-best order, early abandoning
on the exact row-NLL sum), same model and calibration set, one process.

    .venv/bin/python benchmarks/blockpruner_search.py [--model smollm2-135m-instruct]
        [--steps 2] [--nsamples 64] [--seq-len 64] [--max-rows 8] [--repeats 1] [--threads 1]

Asserts the two removal orders and every step's calibration PPL are identical, and prints the
speed ratio as wall time and as process CPU time (medians over repeats): on a shared machine
the CPU-time ratio is the one other processes do not distort.

It also prints the ceiling of these two exact tricks on the run's own numbers: from the plain
loop's candidate PPLs, the work an oracle would need that scores the winner first, resumes every
candidate at its own block and drops each loser after the smallest share of rows that can prove
it loses (rows of equal NLL: share = log PPL_best / log PPL_candidate, since the bound is NLL >= 0
for the unscored rows). Cost is counted in multiply-adds per token (block and lm_head weights).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

os.environ.setdefault("WORKBENCH_PROGRESS", "0")


def oracle_ratio(bm, steps: list[dict], lm_head_params: int) -> float:
    """Plain-loop work / the work of an oracle using prefix reuse + early abandoning (see above)."""
    from workbench.pruning.blocks import BlockModel

    plain = oracle = 0.0
    removed: set = set()
    for s in steps:
        cands = {tuple(k.split(":")): v for k, v in s["candidates"].items()}
        best = math.log(s["ppl"])
        for (kind, i), ppl in cands.items():
            c = (kind, int(i))
            live = [b for b in bm.blocks("mix") if b not in removed and b != c]
            full = sum(bm.block_params(b) for b in live) + lm_head_params
            tail = sum(bm.block_params(b) for b in live
                       if BlockModel.point(b) >= BlockModel.point(c)) + lm_head_params
            share = 1.0 if math.log(ppl) <= best else best / math.log(ppl)
            plain += full
            oracle += tail * share
        removed |= {tuple(b) for b in s["removed"]}
    return plain / oracle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--max-rows", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--block-type", default="mix")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from workbench.common.models import load_causal_lm
    from workbench.pruning.blocks import BlockModel
    from workbench.pruning.calibration import calibration_rows
    from workbench.pruning.search import greedy

    model, tok = load_causal_lm(a.model)
    rows = calibration_rows(tok, "sharegpt", a.nsamples, a.seq_len, seed=42, max_rows=a.max_rows)
    print(f"model {a.model}: calibration {tuple(rows.shape)} (sharegpt, {a.nsamples} examples), "
          f"{a.steps} greedy steps ({a.block_type}), batch {a.batch_size}, {a.threads} thread(s)",
          flush=True)
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    with BlockModel(model) as bm:
        for _ in range(a.repeats):
            for fast in (True, False):
                t0, c0 = time.perf_counter(), time.process_time()
                steps = greedy(bm, rows, a.steps, block_type=a.block_type, fast=fast,
                               batch_size=a.batch_size)
                wall[fast].append(time.perf_counter() - t0)
                cpu[fast].append(time.process_time() - c0)
                results[fast] = ([s["set"] for s in steps], [s["ppl"] for s in steps],
                                 greedy.last_forwards, greedy.last_batch_evals)
                if not fast and a.block_type == "mix":
                    ceiling = oracle_ratio(bm, steps,
                                           model.get_output_embeddings().weight.numel())
                print(f"{'fast' if fast else 'plain'}: wall {wall[fast][-1]:.1f} s, "
                      f"cpu {cpu[fast][-1]:.1f} s", flush=True)
    assert results[True][0] == results[False][0], (results[True][0], results[False][0])
    assert results[True][1] == results[False][1], (results[True][1], results[False][1])
    print("order:", results[True][0][-1])
    print("ppl per step:", [round(p, 4) for p in results[True][1]])
    print(f"row batches scored: plain {results[False][3]}, fast {results[True][3]}; decoder work "
          f"in full forwards: plain {results[False][2]:.1f}, fast {results[True][2]:.1f}")
    if a.block_type == "mix":
        print(f"ceiling of prefix reuse + early abandoning on these PPLs (oracle order, equal "
              f"rows): {ceiling:.2f}x")
    pw, fw = statistics.median(wall[False]), statistics.median(wall[True])
    pc, fc = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"wall: plain {pw:.1f} s, fast {fw:.1f} s, ratio {pw / fw:.2f}x; "
          f"cpu: plain {pc:.1f} s, fast {fc:.1f} s, ratio {pc / fc:.2f}x (orders and PPLs equal)")


if __name__ == "__main__":
    main()
