"""`workbench` command line: models, data, reproduce, app, and each paper's own commands."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from workbench.common.papers import PAPERS

PAPER_CLIS = tuple(f"{p.package}.cli" for p in PAPERS) + ("workbench.plan",)
LOOPBACK_HINT = ("workbench app: warning: --host {host} is not a loopback address: anyone who can "
                 "reach this machine can use the app{auth}.")


def _offline_defaults() -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def cmd_models(args: argparse.Namespace) -> int:
    from workbench.common import models

    if args.action == "prepare":
        if not args.names:
            raise ValueError("workbench models prepare: name at least one model, or 'all'")
        names = models.OFFLINE_MODELS.names() if args.names == ["all"] else args.names
        for name in names:
            if not name.startswith("tiny:"):
                models.OFFLINE_MODELS.check(name)
            path = models.prepare(name, force=args.force)
            sys.stdout.write(f"{name}: ready at {path}\n")
        return 0
    rows = [models.describe(n) for n in models.all_model_names()]
    cols = ("name", "ready", "kind", "arch", "size_mb", "tokenizer", "vocab", "chat_template")
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    for r in rows:
        if r.get("error"):
            lines.append(f"  {r['name']}: {r['error']}")
        elif r.get("hint"):
            lines.append(f"  {r['name']}: not converted yet; run `{r['hint']}`")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from workbench.data import corpus_status, format_status_table

    rows = corpus_status()
    sys.stdout.write(format_status_table(rows) + "\n")
    return 0 if all(r["available"] for r in rows) else 1


def check_reproduce(args: argparse.Namespace) -> None:
    """Everything a typo can break, checked in well under 2 s, before torch or any kernel loads."""
    from workbench.nbparams import check_params, check_results_dir
    from workbench.reproduce import parse_params

    args.params = parse_params(args.param)
    check_params(args.name, args.profile, args.params)
    check_results_dir(args.results)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from workbench.reproduce import reproduce

    outcomes = reproduce(args.name, args.profile, args.results, args.params, timeout=args.timeout)
    for o in outcomes:
        note = f"  ({o.error})" if o.error else ""
        sys.stdout.write(f"{o.name:12s} {o.status:8s} {o.seconds:7.1f} s{note}\n")
    sys.stdout.write(f"report: {os.path.join(args.results, 'report.html')}\n")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_app(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ImportError("the app needs gradio, which the main job's set-up leaves out: run "
                          "`bash scripts/setup.sh` (the full set-up)")
    from workbench.apphub import build_hub, is_loopback, parse_auth

    auth = parse_auth(args.auth)
    if not is_loopback(args.host):
        sys.stderr.write(LOOPBACK_HINT.format(
            host=args.host, auth=" after logging in" if auth else "; add --auth user:password") + "\n")
    build_hub(args.runs).queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, share=False, footer_links=["gradio"],
        auth=auth, max_file_size="1mb",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list models, or `prepare NAME` to convert and cache one")
    m.add_argument("action", nargs="?", choices=["list", "prepare"], default="list")
    m.add_argument("names", nargs="*", help="model names for prepare (or 'all')")
    m.add_argument("--force", action="store_true", help="rebuild even if cached")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("data", help="list the corpora and whether each is available")
    d.set_defaults(func=cmd_data)

    r = sub.add_parser("reproduce", help="execute the paper notebooks with papermill")
    r.add_argument("name", nargs="?", default="all", help="all | blockpruner | fusechat | seft | toxic_spans")
    r.add_argument("--profile", default="quick", help="smoke | quick | cpu | paper")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="notebook parameter override (repeatable)")
    r.add_argument("--results", default="results", help="output folder (default: results)")
    r.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    r.set_defaults(func=cmd_reproduce, precheck=check_reproduce)

    a = sub.add_parser("app", help="launch the Gradio hub (127.0.0.1 by default)")
    a.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else warns)")
    a.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                   help="require this login (Gradio auth); use it with a non-loopback --host")
    a.add_argument("--port", type=int, default=7860)
    a.add_argument("--runs", default=None, help="runs root (default: $WORKBENCH_RUNS or ./runs)")
    a.set_defaults(func=cmd_app)

    for mod in PAPER_CLIS:
        module = _paper_cli(mod)
        if module is not None:
            module.register(sub)
    return p


def _paper_cli(name: str) -> ModuleType | None:
    """A paper's `cli.py`, loaded from its file without importing the paper package (whose
    `__init__` pulls in torch): `workbench --help` stays fast. None when the paper has none."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).parent.joinpath(*name.split(".")[1:]).with_suffix(".py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_workbench_cli_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    _offline_defaults()
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "precheck", None) is not None:
            args.precheck(args)
        from workbench.common.runtime import setup_logging

        setup_logging(logging.DEBUG if args.verbose else logging.INFO)
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, ImportError) as e:
        if args.verbose:
            raise
        sys.stderr.write(f"workbench: error: {_first_line(e)}\n")
        return 2


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
