"""`workbench seft ...`: the whole experiment, or one training stage (also under accelerate).

    workbench seft run --preset quick -p rounds=2
    workbench seft stage reviser --preset paper
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m workbench.cli \\
        seft stage sft --preset paper -p training_args='{gradient_accumulation_steps: 8}'
    workbench seft stage round --round 1 --preset paper

A stage writes into the run folder `run` uses (same config -> same folder), and `run` then skips
it. Under `accelerate launch` every rank trains and only the main process writes.
"""

from __future__ import annotations

import argparse
import json


def _config(args: argparse.Namespace):
    from workbench.reproduce import parse_params
    from workbench.seft.config import SEFTConfig

    return SEFTConfig.from_preset(args.preset, output_dir=args.output_dir,
                                  **parse_params(args.param))


def _cmd_run(args: argparse.Namespace) -> int:
    from workbench.seft.run import run_seft

    res = run_seft(_config(args))
    if res.metrics:
        print(res.run_dir)
        print(json.dumps({k: v for k, v in res.metrics.items()
                          if not isinstance(v, list | dict)}, indent=1))
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    from workbench.common.rundir import is_main_process
    from workbench.seft.run import run_stage

    info = run_stage(_config(args), args.stage, round=args.round)
    if is_main_process():
        print(json.dumps({k: v for k, v in info.items() if not isinstance(v, list | dict)},
                         indent=1))
    return 0


# = workbench.seft.stages.STAGES, written out: importing the package loads torch, and
# `workbench --help` must stay under a second (tests/integration/test_cli.py checks they agree)
STAGES = ("reviser", "sft", "dpo", "orpo", "round")


def register(subparsers) -> None:
    p = subparsers.add_parser("seft", help="SEFT: reviser, baselines, self-evolution rounds")
    sub = p.add_subparsers(dest="seft_cmd", required=True)
    for name, fn, helptext in (("run", _cmd_run, "the whole experiment (resumes a killed run)"),
                               ("stage", _cmd_stage, "ONE training stage, also under "
                                "`accelerate launch` (data-parallel, main process writes)")):
        c = sub.add_parser(name, help=helptext)
        if name == "stage":
            c.add_argument("stage", choices=STAGES)
            c.add_argument("--round", type=int, default=None, help="round number (stage round)")
        c.add_argument("--preset", default="quick", help="smoke | quick | cpu | paper")
        c.add_argument("--output-dir", default=None, help="runs root")
        c.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                       help="config override, YAML value (repeatable)")
        c.set_defaults(func=fn)
