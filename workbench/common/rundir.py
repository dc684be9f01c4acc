"""Run directories: `config.yaml`, `env.json`, `metrics.json`, `artifacts/`.

A run is *complete* when `metrics.json` exists; it is written last and atomically, so a killed
run never looks complete. Checkpoints for resuming live in `checkpoints/` of the same folder:
re-running the same config (same `run_name`) picks them up.

    run = RunDir.create(cfg, kind="blockpruner")
    run.write_artifact_json("order.json", ...)
    run.finish({"ppl": 12.3})

Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1) the protocol is rank-aware: only
the main process creates the folder and writes ``config.yaml``, ``env.json``, artifacts, stage
markers and ``metrics.json``; the other ranks wait on a barrier (:func:`barrier`) and then open
the same folder. One process (no ``WORLD_SIZE``) never touches ``torch.distributed``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, read_yaml, write_json, write_yaml

log = logging.getLogger(__name__)


def world_size() -> int:
    """Processes of this launch (``WORLD_SIZE`` set by ``accelerate launch`` / ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(cpu: bool | None = None) -> None:
    """Join the launch's process group (gloo on CPU, nccl on CUDA) through accelerate's
    ``PartialState``, the same object ``TrainingArguments`` uses later. ``cpu`` (default: no CUDA
    visible) must match the trainers' ``use_cpu``. Nothing happens in a single process."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    import datetime

    import torch
    from accelerate import PartialState

    # the main process may work alone for long (judging, merging) while the others wait
    timeout = datetime.timedelta(seconds=int(os.environ.get("WORKBENCH_DIST_TIMEOUT", "10800")))
    PartialState(cpu=not torch.cuda.is_available() if cpu is None else cpu, timeout=timeout)


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    init_distributed()
    dist.barrier()


def local_device(device: str) -> str:
    """``auto`` / ``cuda`` under a multi-process launch -> this rank's GPU (``cuda:LOCAL_RANK``);
    anything else (and every single-process run) unchanged."""
    if world_size() > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"
    return device


def runs_root(output_dir: str | Path | None = None) -> Path:
    """`output_dir`, else $WORKBENCH_RUNS, else ./runs."""
    if output_dir:
        return Path(output_dir)
    return Path(os.environ.get("WORKBENCH_RUNS", "runs"))


def config_hash(config: dict[str, Any]) -> str:
    keep = {k: v for k, v in config.items() if k not in ("output_dir", "run_name")}
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Versions, git commit, seed and device: what `env.json` records."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("workbench", "torch", "transformers", "tokenizers", "datasets", "accelerate",
                "trl", "peft", "lm-eval", "gradio", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "versions": versions,
        "git_commit": git_commit(),
        "seed": seed,
        "device": device,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return info


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, config: Any, kind: str, *, device: str | None = None) -> RunDir:
        """Create (or reopen, for resume) the run folder `<root>/<kind>/<run_name>`."""
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        name = cfg.get("run_name") or f"{cfg.get('preset', 'custom')}-{config_hash(cfg)}"
        path = runs_root(cfg.get("output_dir")) / kind / name
        run = cls(path)
        if is_main_process():  # under a multi-process launch the other ranks wait below
            path.mkdir(parents=True, exist_ok=True)
            if run.is_complete():
                # a finished run is immutable: re-running starts over, keeping nothing stale
                log.info("run %s was complete; re-running it", path)
                (path / "metrics.json").unlink()
            write_yaml(path / "config.yaml", {"kind": kind, **cfg})
            env = environment(seed=cfg.get("seed"), device=device)
            if world_size() > 1:
                env["world_size"] = world_size()
            write_json(path / "env.json", env)
        barrier()
        return run

    # ---- layout -------------------------------------------------------------------------
    @property
    def artifacts(self) -> Path:
        p = self.path / "artifacts"
        p.mkdir(exist_ok=True)  # idempotent on every rank
        return p

    @property
    def checkpoints(self) -> Path:
        p = self.path / "checkpoints"
        p.mkdir(exist_ok=True)
        return p

    def is_complete(self) -> bool:
        return (self.path / "metrics.json").exists()

    # ---- writing ------------------------------------------------------------------------
    def write_artifact_json(self, name: str, obj: Any) -> Path:
        """Write `artifacts/<name>` (main process only; every rank gets the path)."""
        path = self.artifacts / name
        if is_main_process():
            write_json(path, obj)
        return path

    def finish(self, metrics: dict[str, Any]) -> Path:
        """Write `metrics.json` last: from now on the run counts as complete (main process only;
        other ranks return at once: whoever needs the file after a launch waits with
        :func:`barrier`)."""
        path = self.path / "metrics.json"
        if is_main_process():
            write_json(path, metrics)
        return path

    # ---- reading ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return read_yaml(self.path / "config.yaml")

    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / "metrics.json")

    def env(self) -> dict[str, Any]:
        return read_json(self.path / "env.json")


def list_runs(kind: str | None = None, root: str | Path | None = None) -> list[Path]:
    """Complete runs under `root` (optionally of one kind), newest first."""
    root = runs_root(root)
    if not root.exists():
        return []
    pattern = f"{kind}/*/metrics.json" if kind else "**/metrics.json"
    found = [p.parent for p in root.glob(pattern)]
    if kind is None:
        found = [p for p in found if (p / "config.yaml").exists()]
    return sorted(found, key=lambda p: (p / "metrics.json").stat().st_mtime, reverse=True)
