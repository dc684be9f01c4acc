"""FuseChat results over finished run folders: the paired held-out CE difference of two models
with its standard error, one table over runs that differ only in the seed, and re-grading a run's
saved MT-Bench answers with another judge or judge mode (nothing is generated again)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track
from workbench.fusion.train.evaluate import _num, fusechat_table


def paired_ce_diff(model: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Held-out CE of ``model`` minus ``reference`` on the same dialogues, with its paired
    standard error: ``diff = sum_d (nll_d - nll_ref_d) / sum_d tokens_d`` (the difference of the
    token-weighted CEs) and ``se = sqrt(n / (n - 1) * sum_d (x_d - diff * tokens_d)^2) /
    sum_d tokens_d``, where ``x_d = nll_d - nll_ref_d`` (the ratio estimator's linearised SE).

    Both arguments are ``heldout`` results (``per_dialogue`` with ``nll_sum``, ``n_tokens``).
    """
    a, b = model["per_dialogue"], reference["per_dialogue"]
    if len(a) != len(b) or any(x["n_tokens"] != y["n_tokens"] for x, y in zip(a, b, strict=False)):
        raise ValueError("paired_ce_diff: the two results are not on the same dialogues")
    tokens = sum(x["n_tokens"] for x in a)
    xs = [x["nll_sum"] - y["nll_sum"] for x, y in zip(a, b, strict=True)]
    diff = sum(xs) / tokens
    n = len(xs)
    if n < 2:
        return {"diff": diff, "se": math.nan}
    ss = sum((x - diff * d["n_tokens"]) ** 2 for x, d in zip(xs, a, strict=True))
    return {"diff": diff, "se": math.sqrt(n / (n - 1) * ss) / tokens}


def rejudge(run_dir: str | Path, *, judge: str = "auto", judge_model: str | None = None,
            mode: str = "expected", max_new_tokens: int = 256, batch_size: int = 4
            ) -> list[dict[str, Any]]:
    """Grade a finished run's saved MT-Bench answers (``checkpoints/eval/*.json``) again with
    another judge or judge mode; nothing is generated again. Writes one JSON per model to
    ``artifacts/judgments-<tag>/`` (reused when present) and ``artifacts/table-<tag>.json``
    (Table 1 layout with the new judge columns); ``metrics.json`` is left as it is. Returns
    the table. ``tag`` is ``workbench.eval.chat.judge_tag`` of the judge."""
    from workbench.eval.chat import judge_tag, make_judge, mtbench_score

    run_dir = Path(run_dir)
    files = sorted((run_dir / "checkpoints" / "eval").glob("*.json"))
    results = {r["model"]: (f, r) for f, r in ((f, read_json(f)) for f in files)}
    if not any(r.get("mtbench_answers") for _, r in results.values()):
        raise ValueError(f"rejudge: {run_dir} has no saved MT-Bench answers "
                         "(checkpoints/eval/*.json with mtbench_answers)")
    j = make_judge(judge, judge_model, mode, max_new_tokens=max_new_tokens, batch_size=batch_size)
    tag = judge_tag(j)
    out_dir = run_dir / "artifacts" / f"judgments-{tag}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rescored = {}
    for label, (f, r) in track(list(results.items()), desc="rejudge"):
        jf = out_dir / f.name
        if not jf.exists() and r.get("mtbench_answers"):
            write_json(jf, {"model": label, "mtbench": mtbench_score(j, r["mtbench_answers"])})
        rescored[label] = {**r, "mtbench": read_json(jf)["mtbench"] if jf.exists() else {}}
    table = fusechat_table(rescored)
    write_json(run_dir / "artifacts" / f"table-{tag}.json",
               {"judge": j.name, "mode": getattr(j, "mode", "generate"), "table": table})
    return table


def seed_table(run_dirs: Sequence[str | Path], reference: str = "SFT",
               judgments: str | None = None) -> list[dict[str, Any]]:
    """One row per model over runs that differ only in the seed: held-out CE per seed, its mean
    and spread, the paired CE difference to ``reference`` per seed (x 1e-4 nats, with SE), and
    the judge and zero-shot averages per seed. ``judgments``: take the judge scores from
    ``artifacts/judgments-<judgments>/`` (written by :func:`rejudge`) instead of the run's own."""
    per_run = [read_json(Path(d) / "metrics.json") for d in run_dirs]
    evals = []
    for d in run_dirs:
        folder = Path(d) / "checkpoints" / "eval"
        ev = {r["model"]: r for r in (read_json(f) for f in sorted(folder.glob("*.json")))}
        if judgments is not None:
            jdir = Path(d) / "artifacts" / f"judgments-{judgments}"
            if not jdir.is_dir():
                raise ValueError(f"seed_table: {d} has no {jdir.name} (run rejudge first)")
            for f in jdir.glob("*.json"):
                jr = read_json(f)
                if jr["model"] in ev:
                    ev[jr["model"]] = {**ev[jr["model"]], "mtbench": jr["mtbench"]}
        evals.append(ev)
    labels = [r["model"] for r in per_run[0]["table"]]
    rows = []
    for label in labels:
        if not all(label in e for e in evals):
            continue
        ces = [e[label]["heldout"]["ce"] for e in evals]
        row: dict[str, Any] = {"model": label, "group": evals[0][label]["group"],
                               "ce": [round(c, 5) for c in ces],
                               "ce_mean": round(sum(ces) / len(ces), 5),
                               "ce_spread": round(max(ces) - min(ces), 5)}
        if all(reference in e for e in evals):
            pd = [paired_ce_diff(e[label]["heldout"], e[reference]["heldout"]) for e in evals]
            row[f"d_vs_{reference.lower()}_1e4"] = [round(1e4 * p["diff"], 2) for p in pd]
            row["se_1e4"] = [round(1e4 * p["se"], 2) for p in pd]
        row["judge"] = [_num(e[label].get("mtbench", {}).get("score")) for e in evals]
        row["zeroshot"] = [_num(e[label].get("zeroshot", {}).get("avg")) for e in evals]
        rows.append(row)
    return rows
