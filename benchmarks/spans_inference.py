"""Toxic spans inference latency: p50/p95 ms per post (batch 1) and posts/s (batch 16), MiniLM tagger.

Usage: python benchmarks/spans_inference.py [--encoder minilm-l6] [--head layer_attention] [--crf] [--n 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.spans.predict import predict_batch
from workbench.spans.train import build_tagger


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="minilm-l6")
    ap.add_argument("--head", default="layer_attention")
    ap.add_argument("--crf", action="store_true")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        from workbench.data import load_toxic_spans
        texts = list(load_toxic_spans("trial")["text"][: a.n])
    except Exception:
        texts = ["you are a stupid idiot and everyone knows it " * 3] * a.n
    model, tok = build_tagger(a.encoder, a.head, a.crf)
    model.eval()
    predict_batch(model, tok, texts[:4])  # warm-up
    lat = []
    for t in texts:
        t0 = time.perf_counter()
        predict_batch(model, tok, [t], max_length=256)
        lat.append(1000 * (time.perf_counter() - t0))
    q = statistics.quantiles(lat, n=20)
    t0 = time.perf_counter()
    predict_batch(model, tok, texts, max_length=256, batch_size=16)
    thr = len(texts) / (time.perf_counter() - t0)
    print(f"{a.encoder} {a.head}{'+crf' if a.crf else ''} threads={torch.get_num_threads()} n={len(texts)}: "
          f"p50 {statistics.median(lat):.1f} ms, p95 {q[18]:.1f} ms per post (batch 1); "
          f"{thr:.1f} posts/s (batch 16); goal p50 <= 50 ms")


if __name__ == "__main__":
    main()
