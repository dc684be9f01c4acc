"""`workbench spans evaluate --run DIR --data CSV [--member NAME ...]`: print the official char F1."""

from __future__ import annotations

import argparse
import sys


def evaluate_posts(run: str, data: str, members: list[str] | None = None, int8: bool = False,
                   extend_words: bool = False, min_votes: int | None = None) -> list[float]:
    """Char F1 of each post of `data` (0..1); their mean is the official score."""
    from workbench.data import load_toxic_spans
    from workbench.spans.inference import load_predictor
    from workbench.spans.report import post_f1s

    ds = load_toxic_spans("test", path=data)
    if len(ds) == 0:
        raise ValueError(f"{data}: no posts")
    pred = load_predictor(run, members, quantize=int8, extend_words=extend_words,
                          min_votes=min_votes).predict_spans(list(ds["text"]))
    return post_f1s(pred, [list(s) for s in ds["spans"]])


def evaluate(run: str, data: str, members: list[str] | None = None, int8: bool = False,
             extend_words: bool = False, min_votes: int | None = None) -> float:
    v = evaluate_posts(run, data, members, int8, extend_words, min_votes)
    return sum(v) / len(v)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from workbench.spans.report import ci_columns

    try:
        f1 = evaluate_posts(args.run, args.data, args.member, args.int8, args.extend_words,
                            args.min_votes)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    c = ci_columns("f1", f1)  # 95 % CI over posts (%): bootstrap from 20 posts on, t below
    ci = f" [{c['f1_lo']:.2f}, {c['f1_hi']:.2f}] (95 % CI," if c["f1_lo"] is not None else " (no CI,"
    print(f"char F1 {100 * sum(f1) / len(f1):.2f}{ci} n={c['f1_n']} posts)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("spans", help="toxic span detection (YNU-HPCC)")
    sub = p.add_subparsers(dest="spans_cmd", required=True)
    e = sub.add_parser("evaluate", help="score a run on a CSV in the official format")
    e.add_argument("--run", required=True, help="run dir made by run_spans")
    e.add_argument("--data", required=True, help="CSV with columns spans,text")
    e.add_argument("--member", action="append", help="member name(s); default: all (voted)")
    e.add_argument("--int8", action="store_true", help="dynamic int8 Linear layers (faster on CPU)")
    e.add_argument("--extend-words", action="store_true", help="grow predicted spans to whole words")
    e.add_argument("--min-votes", type=int, default=None, help="votes a character needs (default: majority)")
    e.set_defaults(func=_cmd_evaluate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
