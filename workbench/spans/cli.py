"""Toxic spans commands.

- `workbench spans evaluate --run DIR --data CSV [--member NAME ...]`: print the official char F1.
- `workbench spans train --preset cpu -p encoder=smollm2-135m-instruct -p lora_r=16 ...`: one run
  (`run_spans`) from a preset and `SpansConfig` overrides; prints its folder and table.
- `workbench spans compare RUN_DIR ... [--baseline RUN:member] [--out FILE.md]`: the runs' members
  side by side (CV and trial char F1 with 95 % CIs, paired differences to a baseline row).
"""

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


def _one_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from workbench.spans.report import ci_columns

    try:
        f1 = evaluate_posts(args.run, args.data, args.member, args.int8, args.extend_words,
                            args.min_votes)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    c = ci_columns("f1", f1)  # 95 % CI over posts (%): bootstrap from 20 posts on, t below
    ci = f" [{c['f1_lo']:.2f}, {c['f1_hi']:.2f}] (95 % CI," if c["f1_lo"] is not None else " (no CI,"
    print(f"char F1 {100 * sum(f1) / len(f1):.2f}{ci} n={c['f1_n']} posts)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from workbench.reproduce import parse_params
    from workbench.spans import SpansConfig, run_spans
    from workbench.spans.compare import compare_runs, to_markdown

    try:
        cfg = SpansConfig.from_preset(args.preset, output_dir=args.output_dir,
                                      **parse_params(args.param))
    except (ValueError, TypeError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    run = run_spans(cfg)
    print(run.path)
    print(to_markdown(compare_runs([run.path])), end="")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from workbench.common.io import atomic_write_text, write_json
    from workbench.spans.compare import compare_runs, spread_markdown, to_markdown

    try:
        rows = compare_runs(args.runs, args.baseline)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    md = to_markdown(rows) + spread_markdown(rows)
    if args.out:
        atomic_write_text(args.out, md)
        write_json(str(args.out).rsplit(".", 1)[0] + ".json", rows)
    print(md, end="")
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
    t = sub.add_parser("train", help="one run from a preset and config overrides")
    t.add_argument("--preset", default="quick", help="smoke | quick | cpu | paper")
    t.add_argument("--output-dir", default=None, help="runs root (default: runs)")
    t.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="SpansConfig field as YAML (4, true, [a, b]; null keeps the preset's value); repeatable")
    t.set_defaults(func=_cmd_train)
    c = sub.add_parser("compare", help="runs side by side: CV and trial char F1 with CIs")
    c.add_argument("runs", nargs="+", help="finished run folders (runs/toxic_spans/NAME)")
    c.add_argument("--baseline", default=None,
                   help="RUN:member to pair against (default: the first run's best member by CV)")
    c.add_argument("--out", default=None, help="also write the table (.md) and rows (.json)")
    c.set_defaults(func=_cmd_compare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
