"""`workbench plan PAPER --profile paper [--gpus N] [--gpu-mem GB] [-p key=value ...]`.

Sizes every stage of a paper's run before it starts: each stage's models are built on the
``meta`` device from their ``config.json`` (local folder, registry name, the hub cache, or the
bundled architecture configs in ``workbench/presets/model_configs/``; no weights), and for each
stage the command prints parameters, weights / gradients + optimizer / activations memory per
GPU under the chosen strategy (DDP, FSDP full shard, DeepSpeed ZeRO-3; LoRA when configured),
whether it fits, and the exact launch command. A plan that cannot fit ends with a one-line error
(exit code 2). The memory formulas are documented in ``workbench.plan_memory``; the stages of
each paper in ``workbench.plan_stages``.

This module stays light (``workbench --help`` loads it from its file): the work is imported
inside ``cmd_plan``.
"""

from __future__ import annotations

import argparse
import sys

STRATEGY_CHOICES = ("auto", "ddp", "fsdp", "zero3")


def cmd_plan(args: argparse.Namespace) -> int:
    from workbench.common.papers import PAPERS
    from workbench.plan_memory import GiB, format_plan, make_plan
    from workbench.reproduce import parse_params

    kinds = [p.kind for p in PAPERS]
    names = kinds if args.paper == "all" else [args.paper]
    over = parse_params(args.param)
    failed = []
    for name in names:
        plans = make_plan(name, args.profile, gpus=args.gpus, gpu_mem_gib=args.gpu_mem,
                          strategy=args.strategy, overrides=over, overhead_gib=args.overhead)
        sys.stdout.write(format_plan(plans, paper=name, profile=args.profile, gpus=args.gpus,
                                     gpu_mem_gib=args.gpu_mem) + "\n\n")
        failed += [p for p in plans if not p.fits]
    if failed:
        worst = max(failed, key=lambda p: p.total)
        raise ValueError(
            f"plan does not fit: {len(failed)} stage(s) exceed {args.gpu_mem:g} GiB per GPU, e.g. "
            f"{worst.stage.name} ({worst.model}) needs {worst.total / GiB:.1f} GiB under "
            f"{worst.strategy}{'+ckpt' if worst.checkpointing else ''} on {args.gpus} GPU(s); "
            "more or larger GPUs, a smaller batch_size/max_length, or lora=true")
    return 0


def register(subparsers) -> None:
    from workbench.common.papers import PAPERS

    p = subparsers.add_parser("plan", help="size a run's stages per GPU (meta-device models) and "
                              "print the launch commands; exit 2 when it cannot fit")
    p.add_argument("paper", choices=[x.kind for x in PAPERS] + ["all"])
    p.add_argument("--profile", default="paper", help="smoke | quick | cpu | paper")
    p.add_argument("--gpus", type=int, default=8, help="GPUs (default 8)")
    p.add_argument("--gpu-mem", type=float, default=80.0, help="GiB per GPU (default 80)")
    p.add_argument("--strategy", default="auto", choices=STRATEGY_CHOICES,
                   help="training strategy (auto: ddp, else fsdp, else fsdp + checkpointing)")
    p.add_argument("--overhead", type=float, default=2.0,
                   help="GiB per GPU for the CUDA context and allocator (default 2)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="config override, YAML value (repeatable)")
    p.set_defaults(func=cmd_plan)


