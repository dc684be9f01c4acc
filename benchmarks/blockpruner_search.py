"""BlockPruner greedy search: plain loop (one full forward per candidate and row batch) vs the
exact fast path (cached prefix hidden states, candidates in likely-best order, early abandoning
on the exact row-NLL sum), same model and calibration set, one process.

    .venv/bin/python benchmarks/blockpruner_search.py [--model smollm2-135m-instruct]
        [--steps 2] [--nsamples 64] [--seq-len 64] [--max-rows 8] [--repeats 1] [--threads 1]

Asserts the two removal orders and every step's calibration PPL are identical, and prints the
speed ratio as wall time and as process CPU time (medians over repeats): on a shared machine
the CPU-time ratio is the one other processes do not distort.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("WORKBENCH_PROGRESS", "0")


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
                print(f"{'fast' if fast else 'plain'}: wall {wall[fast][-1]:.1f} s, "
                      f"cpu {cpu[fast][-1]:.1f} s", flush=True)
    assert results[True][0] == results[False][0], (results[True][0], results[False][0])
    assert results[True][1] == results[False][1], (results[True][1], results[False][1])
    print("order:", results[True][0][-1])
    print("ppl per step:", [round(p, 4) for p in results[True][1]])
    print(f"row batches scored: plain {results[False][3]}, fast {results[True][3]}; decoder work "
          f"in full forwards: plain {results[False][2]:.1f}, fast {results[True][2]:.1f}")
    pw, fw = statistics.median(wall[False]), statistics.median(wall[True])
    pc, fc = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"wall: plain {pw:.1f} s, fast {fw:.1f} s, ratio {pw / fw:.2f}x; "
          f"cpu: plain {pc:.1f} s, fast {fc:.1f} s, ratio {pc / fc:.2f}x (orders and PPLs equal)")


if __name__ == "__main__":
    main()
