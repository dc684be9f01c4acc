"""Merge benchmark: time and peak RSS of our streamed SCE merge, vs mergekit's `sce` if installed.

Usage: python benchmarks/merge.py [--models DIR DIR ...] [--base DIR|NAME] [--select-topk 0.1]
                                  [--repeats 3] [--method sce]

Without --models, three perturbed copies of `tiny:llama` are written to a temp dir. Each merge
runs in a fresh child process so its peak RSS (ru_maxrss) is its own. mergekit's `sce` is the
upstream (masked-delta) variant, so the max |difference| is reported against our
`variant="masked"` (and, for information, against the default `"official"` FuseChat variant).
mergekit is optional and never a dependency: without it the comparison is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

OURS = """
import json, resource, sys, time
from workbench.fusion.merge import MergeConfig, run_merge
import torch  # noqa
a = json.loads(sys.argv[1])
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
run_merge(MergeConfig(models=tuple(a["models"]), base_model=a["base"], merge_method=a["method"],
                      parameters=a["params"], out_dir=a["out"], device="cpu", overwrite=True))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rss0_kb": rss0,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

MERGEKIT = """
import json, resource, sys, time, yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import MergeOptions, run_merge
a = json.loads(sys.argv[1])
cfg = MergeConfiguration.model_validate({
    "models": [{"model": m} for m in a["models"]], "base_model": a["base"],
    "merge_method": "sce", "parameters": {"select_topk": a["params"]["select_topk"]},
    "dtype": "float32"})
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
run_merge(cfg, out_path=a["out"], options=MergeOptions(copy_tokenizer=True))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rss0_kb": rss0,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child(code: str, args: dict) -> dict:
    env = {**os.environ, "WORKBENCH_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "child failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bench(code: str, args: dict, repeats: int) -> dict:
    runs = [_child(code, args) for _ in range(repeats)]
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": max(r["peak_kb"] for r in runs) / 1024,
            "merge_rss_mb": max(r["peak_kb"] - r["rss0_kb"] for r in runs) / 1024}


def _uniform_in_mergekit(base: str, models: list[str], select_topk: float) -> set[str]:
    """Tensors where mergekit's `sce_weight` falls back to uniform weights: the sum over inputs
    of the mean squared (selected) delta is below its 1e-6 threshold, as for most tensors of
    fine-tuned models; there our (exact) SCE weights differ from mergekit's by design."""
    from workbench.common.models import resolve_model
    from workbench.fusion.merge import Checkpoint, sce_select_mask
    from workbench.fusion.merge.registry import stack_deltas

    b = Checkpoint(resolve_model(base))
    ins = [Checkpoint(m) for m in models]
    out = set()
    for name in b.names:
        t = b.load(name)
        if not t.is_floating_point():
            continue
        d = stack_deltas(t, [c.load(name) for c in ins])
        d = d * sce_select_mask(d, select_topk)
        if float(d.square().flatten(1).mean(1).sum()) < 1e-6:
            out.add(name)
    return out


def _max_abs_diff(a: Path, b: Path, names: set[str] | None = None) -> tuple[float, str, int]:
    """(max |a - b| over the tensors in `names` (all if None), where it occurs, tensors seen)."""
    from workbench.fusion.merge import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    worst, where, n = 0.0, "-", 0
    for name in ca.names:
        if names is not None and name not in names:
            continue
        x, y = ca.load(name).float(), cb.load(name).float()
        d, n = float((x - y).abs().max()), n + 1
        if d > worst:
            worst, where = d, name
    return worst, where, n


def _size_mb(folder: str) -> float:
    from workbench.common.models import resolve_model

    return sum(p.stat().st_size for p in Path(resolve_model(folder)).glob("*.safetensors")) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--base", default="tiny:llama")
    ap.add_argument("--method", default="sce")
    ap.add_argument("--select-topk", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = a.models
        if not models:
            from workbench.fusion.merge.synthetic import perturbed_copies

            models = [str(p) for p in perturbed_copies("tiny:llama", Path(tmp) / "in", 3)]
        params = {"select_topk": a.select_topk} if a.method == "sce" else {}
        args = {"models": models, "base": a.base, "method": a.method, "params": params}
        size = _size_mb(a.base)
        print(f"inputs: base {a.base} ({size:.1f} MB) + {len(models)} models; method {a.method} "
              f"{params}; {a.repeats} repeats, median time, CPU, {os.cpu_count()} cores")
        res = {}
        for variant in (["official", "masked"] if a.method == "sce" else [None]):
            p = {**params, "variant": variant} if variant else params
            r = _bench(OURS, {**args, "params": p, "out": f"{tmp}/ours_{variant}"}, a.repeats)
            res[variant] = r
            print(f"ours {a.method}{'/' + variant if variant else ''}: {r['seconds']:.2f} s, "
                  f"peak RSS {r['peak_mb']:.0f} MB (merge adds {r['merge_rss_mb']:.0f} MB over "
                  f"the imports; one model = {size:.1f} MB)")
        if a.method != "sce":
            return
        if importlib.util.find_spec("mergekit") is None:
            print("mergekit comparison skipped: mergekit is not installed in this environment "
                  "(optional peer, LGPL; `pip install mergekit` to enable the comparison)")
            return
        try:
            from workbench.common.models import resolve_model

            # mergekit takes hub ids or folders, not our registry names (tiny:llama, ...)
            r = _bench(MERGEKIT, {**args, "base": str(resolve_model(a.base)),
                                  "out": f"{tmp}/mergekit"}, a.repeats)
        except RuntimeError as e:
            print(f"mergekit comparison failed: {e}")
            return
        print(f"mergekit sce: {r['seconds']:.2f} s, peak RSS {r['peak_mb']:.0f} MB; "
              f"time ratio ours/mergekit {res['masked']['seconds'] / r['seconds']:.2f}")
        uniform = _uniform_in_mergekit(a.base, models, a.select_topk)
        from workbench.fusion.merge import Checkpoint

        names = set(Checkpoint(f"{tmp}/mergekit").names)
        for variant in ("masked", "official"):
            tag = "matching variant" if variant == "masked" else "different variant, expected > 0"
            for label, subset in (("SCE weights", names - uniform),
                                  ("mergekit's uniform fallback", uniform)):
                d, where, n = _max_abs_diff(Path(f"{tmp}/ours_{variant}"), Path(f"{tmp}/mergekit"),
                                            subset)
                print(f"max |ours[{variant}] - mergekit| = {d:.3e} over {n} tensors with "
                      f"{label} (at {where}; {tag})")


if __name__ == "__main__":
    main()
