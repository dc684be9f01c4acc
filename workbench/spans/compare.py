"""Compare toxic-span runs (backbones, heads, context lengths) by cross-validation and trial.

`compare_runs(run_dirs)` reads finished `run_spans` folders and returns one row per member
(and the vote): the run's variant (encoder, head, CRF, LoRA rank, window length), the CV char F1
with its 95 % CI over CV posts and the per-fold sd, the trial char F1 with its CI, and the paired
difference to a baseline row on the same posts (CV: the same train posts when the runs share
`cv_limit`, `seed` and `cv_folds`; trial: the same trial posts) with its verdict: `better` /
`worse` when the 95 % CI excludes 0 (`workbench.eval.stats.verdict`), else "inconclusive at
this scale"; `same` when every post scores alike. Pairs are taken on the post ids the two rows
share; rows without per-post values get no difference.

These intervals are over posts for one trained model each: they do not contain training noise
(seed, batch order). Train the baseline with several `seeds` and compare against their spread:
on MiniLM-L6 (900 posts, 2 epochs) three seeds of one config differed by up to 1.7 CV points and
2.3 trial points, and the paired interval over posts called two of those seed pairs "better".

The baseline is the first run's best member by CV (or the row named `baseline` = "RUN:member").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from workbench.common.io import read_json

VARIANT_KEYS = ("encoder", "lora_r", "max_length", "epochs", "train_limit", "cv_limit", "cv_folds")


def _pct(x: float | None) -> float | None:
    return round(100 * x, 2) if x is not None and math.isfinite(x) else None


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's config, metrics and per-post F1 lists (`cv` and `trial`, keyed by row)."""
    p = Path(run_dir)
    if not (p / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished toxic-spans run (no metrics.json)")
    cfg = yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {}
    items = {}
    for key, name in (("cv", "cv_char_f1"), ("trial", "char_f1")):
        f = p / "artifacts" / "per_item" / f"{name}.json"
        if f.is_file():
            d = read_json(f)
            items[key] = {row: dict(zip(d["ids"], v, strict=True)) for row, v in d["values"].items()}
    return {"name": p.name, "path": str(p), "config": cfg, "metrics": read_json(p / "metrics.json"),
            "items": items}


def _paired(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, Any]:
    from workbench.eval.stats import INCONCLUSIVE, paired_item_ci, verdict

    if not a or not b:
        return {}
    ids = [i for i in a if i in b]
    if len(ids) < 2:
        return {}
    e = paired_item_ci([a[i] for i in ids], [b[i] for i in ids])
    word = ("same" if e.lo == e.hi == 0 else "better" if verdict(e, ">") == "reproduced"
            else "worse" if verdict(e, "<") == "reproduced" else INCONCLUSIVE)
    return {"diff": _pct(e.value), "lo": _pct(e.lo), "hi": _pct(e.hi), "n": e.n, "verdict": word}


def compare_runs(run_dirs: Sequence[str | Path], baseline: str | None = None) -> list[dict[str, Any]]:
    """One row per member and vote of each run, with paired differences to the baseline row."""
    if not run_dirs:
        raise ValueError("compare: no run folders given")
    runs = [load_run(d) for d in run_dirs]
    rows = []
    for r in runs:
        cfg, m = r["config"], r["metrics"]
        for t in m.get("table", []):
            member = t["member"]
            rows.append({
                "run": r["name"], "member": member,
                **{k: cfg.get(k) for k in VARIANT_KEYS},
                "head": t.get("head"), "crf": t.get("crf"), "epoch": t.get("epoch"),
                "cv_f1": t.get("cv_f1"), "cv_f1_lo": t.get("cv_f1_lo"), "cv_f1_hi": t.get("cv_f1_hi"),
                "cv_sd": t.get("cv_sd"), "cv_n": t.get("cv_f1_n"),
                "trial_f1": t.get("trial_f1"), "trial_f1_lo": t.get("trial_f1_lo"),
                "trial_f1_hi": t.get("trial_f1_hi"), "trial_n": t.get("trial_f1_n"),
                "train_cpu_s": t.get("train_cpu_s"),
                "_cv": r["items"].get("cv", {}).get(member),
                "_trial": r["items"].get("trial", {}).get(member),
            })
    if not rows:
        raise ValueError("compare: the runs have no table rows")
    if baseline is None:
        first = [x for x in rows if x["run"] == runs[0]["name"] and x["member"] != "ensemble"
                 and x["cv_f1"] is not None] or [rows[0]]
        base = max(first, key=lambda x: x["cv_f1"] if x["cv_f1"] is not None else -1)
    else:
        run, _, member = baseline.partition(":")
        match = [x for x in rows if x["run"] == run and x["member"] == member]
        if not match:
            raise ValueError(f"compare: baseline {baseline!r} is not a RUN:member of the runs given")
        base = match[0]
    out = []
    for x in rows:
        row = {k: v for k, v in x.items() if not k.startswith("_")}
        row["baseline"] = x is base
        if x is not base:
            for key, tag in (("_cv", "cv"), ("_trial", "trial")):
                d = _paired(x[key], base[key])
                row.update({f"{tag}_vs_base_{k}": v for k, v in d.items()})
        out.append(row)
    return out


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a markdown table (F1 [95 % CI], differences to the baseline)."""
    def ci(v, lo, hi):
        if v is None:
            return "–"
        return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else f"{v:.2f}"

    def diff(r, tag):
        if r.get("baseline"):
            return "baseline"
        d = r.get(f"{tag}_vs_base_diff")
        if d is None:
            return "–"
        lo, hi = r[f"{tag}_vs_base_lo"], r[f"{tag}_vs_base_hi"]
        ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else ""
        return f"{d:+.2f}{ci} {r[f'{tag}_vs_base_verdict']} (n {r[f'{tag}_vs_base_n']})"
    head = ("| run | member | encoder | LoRA r | max len | epoch | CV F1 [95 % CI] (sd over folds) | n CV "
            "| trial F1 [95 % CI] | n trial | CV diff vs baseline (over posts) "
            "| trial diff vs baseline (over posts) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        sd = f" (sd {r['cv_sd']:.2f})" if r.get("cv_sd") is not None else ""
        lines.append(
            f"| {r['run']} | {r['member']} | {r['encoder']} | {r['lora_r'] or 0} | {r['max_length']} "
            f"| {r['epoch'] if r['epoch'] is not None else '–'} "
            f"| {ci(r['cv_f1'], r['cv_f1_lo'], r['cv_f1_hi'])}{sd} | {r['cv_n'] or '–'} "
            f"| {ci(r['trial_f1'], r['trial_f1_lo'], r['trial_f1_hi'])} | {r['trial_n'] or '–'} "
            f"| {diff(r, 'cv')} | {diff(r, 'trial')} |")
    return "\n".join(lines) + "\n"


def seed_spread(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one variant trained with different seeds (same encoder, LoRA, window, data, head,
    CRF): mean and sd of their CV and trial F1 over the seeds, for groups of 2 or more."""
    from statistics import mean, stdev

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["member"] == "ensemble":
            continue
        key = tuple(r.get(k) for k in (*VARIANT_KEYS, "head", "crf"))
        groups.setdefault(key, []).append(r)
    out = []
    for g in groups.values():
        if len(g) < 2:
            continue
        row = {"members": [f"{r['run']}:{r['member']}" for r in g], "n_seeds": len(g),
               **{k: g[0].get(k) for k in (*VARIANT_KEYS, "head", "crf")}}
        for m in ("cv_f1", "trial_f1"):
            v = [r[m] for r in g if r.get(m) is not None]
            row[f"{m}_mean"] = round(mean(v), 2) if v else None
            row[f"{m}_sd"] = round(stdev(v), 2) if len(v) > 1 else None
            row[f"{m}_range"] = round(max(v) - min(v), 2) if v else None
        out.append(row)
    return out


def spread_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per variant trained with several seeds (`seed_spread`), to print under the table."""
    return "".join(
        f"\nseed spread of {g['encoder']} {g['head']}{'-crf' if g['crf'] else ''} ({g['n_seeds']} seeds: "
        f"{', '.join(g['members'])}): CV F1 {g['cv_f1_mean']} sd {g['cv_f1_sd']} (range {g['cv_f1_range']}), "
        f"trial F1 {g['trial_f1_mean']} sd {g['trial_f1_sd']} (range {g['trial_f1_range']})\n"
        for g in seed_spread(rows))
