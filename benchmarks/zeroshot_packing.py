"""Zero-shot scoring speed and agreement: lm-eval's HFLM vs `PackedHFLM` on the same items.

Both run `workbench.eval.zeroshot.evaluate` (lm-eval's task YAMLs, metrics, batching) on the
first `--limit` validation examples of each task, in one process, alternating, `--repeats`
times; prints per task the median seconds of each, the per-example agreement of the reported
metric (acc_norm / acc), the largest |log-likelihood difference| and both scores with their
stderr. Packing changes only the order of floating-point operations, so in bf16 near-ties can
flip; the agreement line says how often. `--fp32-reference` also scores the items with HFLM
in fp32 (a copy of the model) and prints how often each bf16 path agrees with it, and HFLM at
batch size 1, so the packing's flips can be set beside bf16's own batch-size noise. Last line: `speedup_packed_vs_hflm <ratio>x` (total
median time of HFLM / packed over all tasks).

Usage: python benchmarks/zeroshot_packing.py [--model smollm2-135m-instruct] [--dtype bfloat16]
       [--tasks hellaswag,piqa,arc_easy] [--limit 200] [--batch-size 8] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.common.models import load_causal_lm
from workbench.eval.zeroshot import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--tasks", default="hellaswag,piqa,arc_easy")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fp32-reference", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = load_causal_lm(a.model, dtype=getattr(torch, a.dtype), device="cpu")
    total = {"hflm": 0.0, "packed": 0.0}
    for task in a.tasks.split(","):
        times: dict[str, list[float]] = {"hflm": [], "packed": []}
        res = {}
        for _ in range(a.repeats):
            for name in ("hflm", "packed"):
                t = time.perf_counter()
                res[name] = evaluate(model, tok, (task,), a.limit, batch_size=a.batch_size,
                                     log_samples=True, packed=name == "packed")
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in total:
            total[k] += med[k]
        h, p = res["hflm"][task], res["packed"][task]
        agree = sum(x == y for x, y in zip(h["values"], p["values"], strict=True))
        lls = [[r[0][0] for s in res[k]["samples"][task] for r in s["resps"]] for k in res]
        diff = max(abs(x - y) for x, y in zip(*lls, strict=True))
        print(f"{task}: n={h['n']} hflm {med['hflm']:.1f} s, packed {med['packed']:.1f} s "
              f"({med['hflm'] / med['packed']:.2f}x); metric agrees on {agree}/{h['n']} "
              f"examples; max |dLL| {diff:.3g}; score hflm {100 * h['score']:.2f} "
              f"(se {100 * h['stderr']:.2f}) packed {100 * p['score']:.2f} "
              f"(se {100 * p['stderr']:.2f})", flush=True)
        if a.fp32_reference:
            ref = evaluate(model.float(), tok, (task,), a.limit, batch_size=a.batch_size)[task]
            model.to(getattr(torch, a.dtype))
            bs1 = evaluate(model, tok, (task,), a.limit, batch_size=1)[task]
            for name, r in (("hflm", h), ("packed", p), ("hflm batch 1", bs1)):
                same = sum(x == y for x, y in zip(r["values"], ref["values"], strict=True))
                print(f"  {task} {a.dtype} {name} agrees with fp32 HFLM on {same}/{h['n']} "
                      f"(fp32 score {100 * ref['score']:.2f})", flush=True)
    print(f"speedup_packed_vs_hflm {total['hflm'] / total['packed']:.2f}x")


if __name__ == "__main__":
    main()
