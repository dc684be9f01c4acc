"""`workbench spans evaluate --run DIR --data CSV [--member NAME ...]`: print the official char F1."""

from __future__ import annotations

import argparse
import sys


def evaluate(run: str, data: str, members: list[str] | None = None, int8: bool = False,
             extend_words: bool = False, min_votes: int | None = None) -> float:
    from workbench.data import load_toxic_spans
    from workbench.spans.metric import span_f1
    from workbench.spans.train import load_predictor

    ds = load_toxic_spans("test", path=data)
    pred = load_predictor(run, members, quantize=int8, extend_words=extend_words,
                          min_votes=min_votes).predict_spans(list(ds["text"]))
    return span_f1(pred, [list(s) for s in ds["spans"]])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        f1 = evaluate(args.run, args.data, args.member, args.int8, args.extend_words, args.min_votes)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"char F1 {100 * f1:.2f}")
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
