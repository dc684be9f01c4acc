"""FuseChat training stages' work: one pairwise target per source, and the baselines.

- :func:`train_pairwise_targets`: one target per source (pivot + that source, MinCE).
- :func:`train_baselines`: ``sft`` (lam=1, no sources) and ``multi`` (all sources at once).
- :func:`train_summary`: steps, losses (first / last / parts) and seconds of trained targets.

The training itself is :func:`workbench.fusion.train.trainer.train_target` (imported on first
use: it loads transformers' Trainer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def short_name(model: str) -> str:
    """``tiny:llama`` -> ``tiny-llama``, ``openchat/openchat_3.5`` -> ``openchat_3.5``."""
    return Path(str(model).rstrip("/")).name.replace(":", "-")


# ---- training ---------------------------------------------------------------------------------
def _args(cfg: Any, **kw: Any):
    from workbench.fusion.train.trainer import TrainArgs

    return TrainArgs.from_config(cfg, **kw)


def train_target(*args: Any, **kw: Any) -> Path:
    """``workbench.fusion.train.trainer.train_target`` (imported on first use)."""
    from workbench.fusion.train.trainer import train_target as _train

    return _train(*args, **kw)


def train_pairwise_targets(cfg: Any, pivot_ds, aligned: dict[str, Any], root: Path
                           ) -> dict[str, Path]:
    """``{"<pivot>-<source>": model folder}``, one target per aligned source."""
    out = {}
    for source, ds in aligned.items():
        name = f"{short_name(cfg.pivot)}-{short_name(source)}"
        out[name] = train_target(_args(cfg), pivot_ds, ds, Path(root) / name)
    return out


def train_baselines(cfg: Any, pivot_ds, aligned: dict[str, Any], root: Path) -> dict[str, Path]:
    """``sft`` (λ=1: plain SFT on the same dialogues) and ``multi`` (MinCE over all sources)."""
    out = {}
    for kind in cfg.baselines:
        if kind == "sft":
            out["SFT"] = train_target(_args(cfg, lam=1.0), pivot_ds, None, Path(root) / "sft")
        elif kind == "multi":
            out["Multi"] = train_target(_args(cfg), pivot_ds, list(aligned.values()),
                                        Path(root) / "multi")
        else:
            raise ValueError(f"unknown baseline {kind!r} (sft, multi)")
    return out


def train_summary(paths: dict[str, Path]) -> dict[str, Any]:
    from workbench.fusion.train.trainer import train_info

    out = {}
    for name, path in paths.items():
        info = train_info(path)
        hist = [h for h in info["log_history"] if "loss" in h]
        out[name] = {"path": str(path), "steps": info["global_step"],
                     "samples": info["num_samples"], "sources": info["num_sources"],
                     "train_loss": info["train_loss"], "seconds": info["seconds"],
                     "first_loss": hist[0]["loss"] if hist else None,
                     "last_loss": hist[-1]["loss"] if hist else None,
                     "source_chosen": _mean_key(hist, "source_chosen")}
    return out


def _mean_key(hist: list[dict[str, Any]], key: str) -> float | None:
    vals = [h[key] for h in hist if key in h]
    return sum(vals) / len(vals) if vals else None


_train_summary = train_summary  # the name stages used before the split
