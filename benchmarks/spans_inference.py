"""Toxic spans inference latency: single member and ensemble, p50/p95 ms per post (batch 1), posts/s.

One post = the full user path: tokenise (with sliding windows), encoder + head, CRF Viterbi,
token -> char offsets; for the ensemble also the per-character vote and the post-level gate (the
run's `ensemble.json`, exactly what `SpanPredictor.predict_spans` and the app's default do).
Reports wall-clock AND process CPU time per post: on a shared machine the wall time includes
waiting for a core, the CPU time (with one thread) is what the post costs. Variants: fp32 and
dynamic int8 Linear layers (`--int8`). Each variant is timed `--repeats` times; the medians over
repeats are printed, with the load average before and after.

Usage: python benchmarks/spans_inference.py [--run RUN_DIR] [--int8] [--n 100] [--threads 1] [--repeats 3]
       without --run: `--members N` untrained taggers (`--encoder minilm-l6 --head layer_attention [--crf]`)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from workbench.spans.predict import predict_batch


def _predictor(a):
    """A SpanPredictor: the run's default ensemble, or `--members` untrained taggers."""
    from workbench.spans.inference import SpanPredictor, quantize_int8
    from workbench.spans.train import build_tagger
    if a.run:
        return SpanPredictor(a.run, quantize=a.int8), f"{a.run}"
    pred = SpanPredictor.__new__(SpanPredictor)
    pred.extend_words, pred.min_votes, pred.tau_post, pred.ensemble = False, None, 0.0, {}
    pred.members = {}
    for k in range(a.members):
        torch.manual_seed(k)
        model, tok = build_tagger(a.encoder, a.head, a.crf)
        model.eval()
        pred.members[f"m{k}"] = (quantize_int8(model) if a.int8 else model, tok, {"max_length": a.max_length})
    return pred, f"{a.members} x {a.encoder} {a.head}{'+crf' if a.crf else ''} (untrained weights)"


def _time(fn, texts):
    wall, cpu = [], []
    for t in texts:
        t0, c0 = time.perf_counter(), time.process_time()
        fn([t])
        wall.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
    return statistics.median(wall), statistics.quantiles(wall, n=20)[18], statistics.median(cpu)


def _once(pred, texts):
    name = next(iter(pred.members))
    model, tok, meta = pred.members[name]
    single = _time(lambda x: predict_batch(model, tok, x, max_length=meta["max_length"]), texts)
    ens = _time(pred.predict_spans, texts)
    t0 = time.perf_counter()
    pred.predict_spans(texts, batch_size=16)
    return (*single, *ens, len(texts) / (time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None, help="trained run dir (else untrained taggers)")
    ap.add_argument("--members", type=int, default=2, help="untrained members without --run")
    ap.add_argument("--encoder", default="minilm-l6")
    ap.add_argument("--head", default="layer_attention")
    ap.add_argument("--crf", action="store_true")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--int8", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        from workbench.data import load_toxic_spans
        texts = list(load_toxic_spans("trial")["text"][: a.n])
    except (FileNotFoundError, ValueError):
        texts = ["you are a stupid idiot and everyone knows it " * 3] * a.n
    pred, desc = _predictor(a)
    pred.predict_spans(texts[:8])  # warm-up
    load0 = os.getloadavg()[0]
    res = [_once(pred, texts) for _ in range(a.repeats)]
    m = [statistics.median(r[i] for r in res) for i in range(7)]
    print(f"{desc}{' int8' if a.int8 else ' fp32'} threads={torch.get_num_threads()} n={len(texts)} "
          f"repeats={a.repeats} load avg {load0:.1f}->{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores:\n"
          f"  single ({next(iter(pred.members))}): wall p50 {m[0]:.1f} ms, p95 {m[1]:.1f} ms per post (batch 1); "
          f"CPU time p50 {m[2]:.1f} ms\n"
          f"  ensemble ({len(pred.members)} members, min_votes={pred.min_votes}, tau_post={pred.tau_post}): "
          f"wall p50 {m[3]:.1f} ms, p95 {m[4]:.1f} ms per post (batch 1); CPU time p50 {m[5]:.1f} ms; "
          f"{m[6]:.1f} posts/s (batch 16); goal ensemble p50 <= 50 ms\n"
          f"  per repeat (single p50, ens p50, ens cpu p50 ms): "
          + "; ".join(f"({r[0]:.1f}, {r[3]:.1f}, {r[5]:.1f})" for r in res))


if __name__ == "__main__":
    main()
