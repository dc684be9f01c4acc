"""Token-alignment benchmark: our DTW vs the plain-Python reference on real token sequences.

Usage: python benchmarks/token_alignment.py [--samples 200] [--max-tokens 512] [--repeats 3]
                                            [--pairs gemma3-270m qwen2.5-coder-0.5b-instruct]

ShareGPT dialogues (``workbench.data.load_sharegpt``) are rendered with the pivot's
(SmolLM2-135M-Instruct) chat template, as FuseChat does for every model, and tokenised by the pivot
and by each source tokenizer (truncated to ``--max-tokens``). For every pair, both
implementations align the same canonical byte texts; the script asserts identical alignments
(groups per pivot position) and prints the time of each, the throughput ratio (ratio of the
median total times over ``--repeats`` runs of ours and one run of the reference, which is slow) and
the median of the per-sample ratios. Timings are wall-clock, single thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")

PIVOT = "smollm2-135m-instruct"


def tokenised_pairs(pivot_tok, source_tok, samples: int, max_tokens: int):
    from workbench.data import load_sharegpt

    ds = load_sharegpt(limit=samples)
    out = []
    for msgs in ds["messages"]:
        text = pivot_tok.apply_chat_template(msgs, tokenize=False)
        p = pivot_tok(text)["input_ids"][:max_tokens]
        s = source_tok(text)["input_ids"][:max_tokens]
        out.append((p, s))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", nargs="+", default=["gemma3-270m", "qwen2.5-coder-0.5b-instruct"])
    args = ap.parse_args()

    from workbench.common.models import load_tokenizer
    from workbench.fusion.align import DTWOptions, dtw_align, reference_dtw, token_texts

    opts = DTWOptions()
    pivot_tok = load_tokenizer(PIVOT)
    piv = token_texts(pivot_tok)
    for name in args.pairs:
        source_tok = load_tokenizer(name)
        src = token_texts(source_tok)
        pairs = tokenised_pairs(pivot_tok, source_tok, args.samples, args.max_tokens)
        texts = [(src.of(s, opts.unit), piv.of(p, opts.unit)) for p, s in pairs]
        cells = sum(len(a) * len(b) for a, b in texts)

        ours_totals, ours_per = [], [[] for _ in texts]
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours = []
            for k, (a, b) in enumerate(texts):
                t = time.perf_counter()
                ours.append(dtw_align(a, b, opts))
                ours_per[k].append(time.perf_counter() - t)
            ours_totals.append(time.perf_counter() - t0)
        ref_per = []
        t0 = time.perf_counter()
        for k, (a, b) in enumerate(texts):
            t = time.perf_counter()
            ref = reference_dtw(a, b, opts.tie_order, opts.empty_fallback, opts.substring_weight)
            ref_per.append(time.perf_counter() - t)
            if ref != ours[k]:
                raise AssertionError(f"{name}: sample {k} aligns differently "
                                     f"(pivot {len(b)} x source {len(a)} tokens)")
        ref_total = time.perf_counter() - t0
        ours_total = statistics.median(ours_totals)
        per_ratio = statistics.median(r / statistics.median(o)
                                      for r, o in zip(ref_per, ours_per, strict=True))
        print(f"{PIVOT} vs {name}: {len(texts)} samples, {cells / 1e6:.1f} M cells, "
              f"mean {statistics.mean(len(b) for _, b in texts):.0f} pivot x "
              f"{statistics.mean(len(a) for a, _ in texts):.0f} source tokens; alignments equal")
        print(f"  reference {ref_total:.2f} s ({len(texts) / ref_total:.1f} samples/s), "
              f"ours {ours_total:.3f} s median of {args.repeats} "
              f"({len(texts) / ours_total:.1f} samples/s)")
        print(f"  throughput ratio {ref_total / ours_total:.1f}x; "
              f"median per-sample ratio {per_ratio:.1f}x")


if __name__ == "__main__":
    main()
