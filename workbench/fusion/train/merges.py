"""FuseChat merging: every ``cfg.merge_methods`` over the pairwise targets, with the parameters
of the FuseChat mergekit configs (papers.md §1.b), and SCE's per-matrix coefficients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track

# FuseChat's mergekit configs (papers.md §1.b): global parameters, per-model weight / density
MERGE_PARAMS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "sce": ({}, {}),  # select_topk = cfg.tau
    "varm": ({}, {}),
    "linear": ({"normalize": True}, {"weight": 0.2}),
    "task_arithmetic": ({"normalize": False}, {"weight": 0.3}),
    "ties": ({"normalize": True}, {"weight": 0.2, "density": 0.6}),
    "dare_linear": ({"normalize": True}, {"weight": 0.2, "density": 0.6}),
}


def merge_config(cfg: Any, method: str, targets: Sequence[Path], out_dir: Path):
    """The ``MergeConfig`` FuseChat uses for ``method`` (base = the pivot)."""
    from workbench.fusion.merge import MergeConfig

    if method not in MERGE_PARAMS:
        raise ValueError(f"no FuseChat parameters for merge method {method!r}; "
                         f"known: {', '.join(MERGE_PARAMS)}")
    params, per_model = MERGE_PARAMS[method]
    params = dict(params)
    if method == "sce":
        params["select_topk"] = cfg.tau
    return MergeConfig(models=tuple(str(t) for t in targets), base_model=cfg.pivot,
                       merge_method=method, parameters=params,
                       model_parameters=tuple(dict(per_model) for _ in targets) if per_model
                       else (), out_dir=str(out_dir), seed=cfg.seed, overwrite=True,
                       chat_template=cfg.chat_template, device=cfg.device)


def merge_targets(cfg: Any, targets: dict[str, Path], root: Path) -> dict[str, dict[str, Any]]:
    """Merge the pairwise targets with every ``cfg.merge_methods``; ``{label: info}``."""
    from workbench.fusion.merge import run_merge

    out = {}
    for method in cfg.merge_methods:
        folder = Path(root) / method
        info_path = Path(root) / f"{method}.json"
        if (folder / "checksums.sha256").exists() and info_path.exists():
            out[method] = read_json(info_path)
            continue
        res = run_merge(merge_config(cfg, method, list(targets.values()), folder))
        info = {"path": str(res.out_dir), "method": res.merge_method, "params": res.params,
                "seconds": res.seconds, "num_tensors": res.num_tensors,
                "vocab_cropped": res.vocab_cropped, "kept_base": res.kept_base}
        write_json(info_path, info)
        out[method] = info
    return out


def sce_matrix_weights(base_model: str, targets: dict[str, Path], tau: float = 0.1,
                       variant: str = "official") -> list[dict[str, Any]]:
    """Per parameter matrix, the SCE coefficient η_j of every target (Select with ``tau``, then
    Calculate), streamed one tensor at a time: ``[{tensor, target, eta, delta_rms}]``."""
    from workbench.common.models import resolve_model
    from workbench.fusion.merge import Checkpoint, sce_coefficients, sce_select_mask
    from workbench.fusion.merge.registry import stack_deltas

    base = Checkpoint(resolve_model(base_model), base_model)
    cks = {k: Checkpoint(Path(v), k) for k, v in targets.items()}
    rows = []
    for name in track(base.names, desc="SCE weights"):
        b = base.load(name)
        ts = [ck.load(name) for ck in cks.values()]
        if not b.is_floating_point() or b.ndim < 2 or any(t.shape != b.shape for t in ts):
            continue
        deltas = stack_deltas(b, ts)
        mask = sce_select_mask(deltas, tau)
        eta = sce_coefficients(deltas * mask)
        rms = deltas.pow(2).flatten(1).mean(1).sqrt()
        for j, label in enumerate(cks):
            rows.append({"tensor": name, "target": label, "eta": float(eta[j]),
                         "delta_rms": float(rms[j])})
    return rows
