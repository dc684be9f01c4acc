"""Toxic spans inference latency: p50/p95 ms per post (batch 1) and posts/s (batch 16), MiniLM tagger.

One post = the full user path: tokenise (with sliding windows), encoder + head, CRF Viterbi,
token -> char offsets. Reports wall-clock AND process CPU time per post: on a shared machine the
wall time includes waiting for a core, the CPU time (with one thread) is what the post costs.
Variants: fp32 and dynamic int8 Linear layers (`--int8`). Each variant is timed `--repeats`
times; the medians over repeats are printed, with the load average before and after.

Usage: python benchmarks/spans_inference.py [--run RUN_DIR [--member NAME]] [--encoder minilm-l6]
       [--head layer_attention] [--crf] [--n 100] [--threads 1] [--repeats 3] [--int8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from workbench.spans.predict import predict_batch


def _model(a):
    if a.run:
        from workbench.spans.train import load_predictor
        pred = load_predictor(a.run, [a.member] if a.member else None, quantize=a.int8)
        name = next(iter(pred.members))
        model, tok, meta = pred.members[name]
        return model, tok, meta["max_length"], f"{a.run} member {name}"
    from workbench.spans.train import build_tagger, quantize_int8
    model, tok = build_tagger(a.encoder, a.head, a.crf)
    model.eval()
    if a.int8:
        model = quantize_int8(model)
    return model, tok, a.max_length, f"{a.encoder} {a.head}{'+crf' if a.crf else ''} (untrained weights)"


def _once(model, tok, texts, max_length):
    wall, cpu = [], []
    for t in texts:
        t0, c0 = time.perf_counter(), time.process_time()
        predict_batch(model, tok, [t], max_length=max_length)
        wall.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
    t0 = time.perf_counter()
    predict_batch(model, tok, texts, max_length=max_length, batch_size=16)
    thr = len(texts) / (time.perf_counter() - t0)
    return statistics.median(wall), statistics.quantiles(wall, n=20)[18], statistics.median(cpu), thr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None, help="trained run dir (else an untrained tagger)")
    ap.add_argument("--member", default=None)
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
    model, tok, max_length, desc = _model(a)
    predict_batch(model, tok, texts[:8], max_length=max_length)  # warm-up
    load0 = os.getloadavg()[0]
    res = [_once(model, tok, texts, max_length) for _ in range(a.repeats)]
    p50, p95, cpu, thr = (statistics.median(r[i] for r in res) for i in range(4))
    print(f"{desc}{' int8' if a.int8 else ' fp32'} threads={torch.get_num_threads()} n={len(texts)} "
          f"repeats={a.repeats} load avg {load0:.1f}->{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores:\n"
          f"  wall p50 {p50:.1f} ms, p95 {p95:.1f} ms per post (batch 1); CPU time p50 {cpu:.1f} ms per post; "
          f"{thr:.1f} posts/s (batch 16); goal p50 <= 50 ms\n"
          f"  per repeat (p50 ms, p95 ms, cpu p50 ms, posts/s): "
          + "; ".join(f"({r[0]:.1f}, {r[1]:.1f}, {r[2]:.1f}, {r[3]:.1f})" for r in res))


if __name__ == "__main__":
    main()
