"""BlockPruner greedy search: plain loop (one full forward per candidate) vs the exact fast path
(cached prefix hidden states + early abandoning), same model and calibration, one process.

    .venv/bin/python benchmarks/blockpruner_search.py [--model smollm2-135m-instruct]
        [--steps 3] [--nsamples 16] [--seq-len 128] [--max-rows 8] [--repeats 1]

Asserts the two removal orders (and every step's PPL) are identical and prints the speed ratio.
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
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--max-rows", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from workbench.common.models import load_causal_lm
    from workbench.pruning.blocks import BlockModel
    from workbench.pruning.calibration import calibration_rows
    from workbench.pruning.search import greedy

    model, tok = load_causal_lm(a.model)
    rows = calibration_rows(tok, "sharegpt", a.nsamples, a.seq_len, seed=42, max_rows=a.max_rows)
    print(f"model {a.model}: calibration {tuple(rows.shape)}, {a.steps} greedy steps (mix)")
    times: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    with BlockModel(model) as bm:
        for _ in range(a.repeats):
            for fast in (True, False):
                t0 = time.perf_counter()
                steps = greedy(bm, rows, a.steps, fast=fast, batch_size=a.batch_size)
                times[fast].append(time.perf_counter() - t0)
                results[fast] = ([s["set"] for s in steps], [s["ppl"] for s in steps],
                                 greedy.last_forwards)
    assert results[True][0] == results[False][0], (results[True][0], results[False][0])
    assert results[True][1] == results[False][1], (results[True][1], results[False][1])
    plain, fast = statistics.median(times[False]), statistics.median(times[True])
    print("order:", results[True][0][-1])
    print("ppl per step:", [round(p, 4) for p in results[True][1]])
    print(f"full-forward equivalents: plain {results[False][2]:.1f}, fast {results[True][2]:.1f}")
    print(f"plain {plain:.2f} s  fast {fast:.2f} s  speed ratio {plain / fast:.2f}x "
          f"(orders equal: True)")


if __name__ == "__main__":
    main()
