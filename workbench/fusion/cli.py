"""`workbench fusechat ...`: run the pipeline, score one model, or align a text.

    workbench fusechat run --preset quick --until alignment -p data_size=16
    workbench fusechat represent --preset paper --model Qwen/Qwen1.5-72B-Chat --worker 0/4
    # ... --worker 1/4, 2/4, 3/4 on the other GPUs (CUDA_VISIBLE_DEVICES), then `run` again
    workbench fusechat align-text --pivot smollm2-135m-instruct --source gemma3-270m "Hello"
    # one stage alone, also on several processes / GPUs (workbench.fusion.launch):
    accelerate launch --config_file configs/accelerate/ddp.yaml -m workbench.cli \
        fusechat stage targets --preset paper
"""

from __future__ import annotations

import argparse
import json


def _config(args: argparse.Namespace):
    from workbench.fusion.config import FuseChatConfig
    from workbench.reproduce import parse_params

    return FuseChatConfig.from_preset(args.preset, output_dir=args.output_dir,
                                      **parse_params(args.param))


def _cmd_run(args: argparse.Namespace) -> int:
    from workbench.fusion.run import run_fusechat

    res = run_fusechat(_config(args), until=args.until)
    print(res.run_dir)
    shown = {k: v for k, v in res.metrics.items() if not isinstance(v, list | dict)}
    print(json.dumps(shown, indent=1))
    return 0


def _cmd_represent(args: argparse.Namespace) -> int:
    from workbench.fusion.run import represent_one

    try:
        i, n = (int(x) for x in args.worker.split("/"))
    except ValueError:
        raise ValueError(f"--worker must look like 0/4, got {args.worker!r}") from None
    st = represent_one(_config(args), args.model, worker=(i, n))
    print(json.dumps(st, indent=1) if st else f"worker {i}/{n} done; other shards still missing")
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    from workbench.common.rundir import is_main_process
    from workbench.fusion.launch import run_stage

    summary = run_stage(_config(args), args.stage)
    if is_main_process():
        shown = {k: v for k, v in summary.get("metrics", {}).items()
                 if not isinstance(v, list | dict)}
        print(json.dumps({"stage": args.stage, "seconds": summary.get("seconds"), **shown},
                         indent=1))
    return 0


def _cmd_align_text(args: argparse.Namespace) -> int:
    from workbench.common import load_tokenizer
    from workbench.fusion.align import align_text

    ta = align_text(args.text, load_tokenizer(args.pivot), load_tokenizer(args.source))
    print(ta.table().to_string(index=False))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("fusechat", help="FuseChat: representations, token alignment, ...")
    sub = p.add_subparsers(dest="fusechat_cmd", required=True)
    for name, fn, helptext in (("run", _cmd_run, "run the pipeline (resumes a killed run)"),
                               ("represent", _cmd_represent,
                                "representations of ONE model of the config (one process per "
                                "GPU; `run` then skips the finished shards)"),
                               ("stage", _cmd_stage,
                                "run ONE stage (earlier ones finished), also under `accelerate "
                                "launch`: targets / baselines train data-parallel, "
                                "representations split shards over the ranks")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--preset", default="quick", help="smoke | quick | cpu | paper")
        c.add_argument("--output-dir", default=None, help="runs root")
        c.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                       help="config override, YAML value (repeatable)")
        if name == "run":
            c.add_argument("--until", default=None, help="stop after this stage")
        elif name == "stage":
            c.add_argument("stage", help="dialogues | representations | cooccurrence | "
                           "alignment | targets | baselines | merges | evaluation")
        else:
            c.add_argument("--model", required=True, help="the pivot or one of the sources")
            c.add_argument("--worker", default="0/1", metavar="I/N",
                           help="compute every N-th shard starting at I (one process per GPU)")
        c.set_defaults(func=fn)
    a = sub.add_parser("align-text", help="align a text under two tokenizers (DTW groups)")
    a.add_argument("--pivot", required=True)
    a.add_argument("--source", required=True)
    a.add_argument("text")
    a.set_defaults(func=_cmd_align_text)
