"""SEFT's table with its uncertainty: n and a 95 % CI for every judged number, per-item files.

From the judge's saved grades (``artifacts/judgments/<model>.json``):

- MT-Bench: a question's score is the mean of its graded turns; ``judge_score`` gets a CI over
  questions (``n_questions``; bootstrap from 20 items on, t interval below: ``stats.item_ci``), ``mtbench_turn1``/``mtbench_turn2`` one over the questions
  graded at that turn;
- win rate vs SFT: each held-out prompt's score (P(win) + P(tie)/2, both answer orders
  averaged) is an item; ``win_rate_vs_sft`` gets a CI over prompts (``n_prompts``), likewise.
  SFT's own 0.5 is a definition and has no interval.

``artifacts/per_item/mtbench_score.json`` (questions x models) and
``artifacts/per_item/win_rate_vs_sft.json`` (prompts x models) let the report compare two models
on the same items (paired bootstrap; ``workbench.report.claims``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.eval.stats import item_ci

DIGITS = 4


def slug(name: str) -> str:
    """The judgments file name of a model (as the evaluate stage writes it)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def per_question(judgment: dict[str, Any], turn: int | None = None) -> dict[str, float]:
    """question id -> mean rating over its graded turns (or that `turn` only); unparsed ratings
    (NaN / None) are left out, a question with none is absent."""
    acc: dict[str, list[float]] = {}
    for r in (judgment.get("mtbench") or {}).get("ratings") or []:
        if turn is not None and r.get("turn") != turn:
            continue
        if _finite(r.get("rating")):
            acc.setdefault(str(r.get("question_id")), []).append(float(r["rating"]))
    return {q: sum(v) / len(v) for q, v in acc.items()}


def per_prompt(judgment: dict[str, Any]) -> list[float | None] | None:
    wr = judgment.get("win_rate") or {}
    pp = wr.get("per_prompt")
    return None if pp is None else [float(x) if _finite(x) else None for x in pp]


def _ci_cols(prefix: str, values: list[float], n_key: str) -> dict[str, Any]:
    e = item_ci(values)  # bootstrap from 20 items on, t interval below
    r = (lambda x: round(x, DIGITS) if math.isfinite(x) else None)  # noqa: E731
    return {f"{prefix}_lo": r(e.lo), f"{prefix}_hi": r(e.hi), n_key: e.n}


def add_uncertainty(table: list[dict[str, Any]], judgments: dict[str, dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """The table's rows with ``<metric>_lo``/``_hi`` and n columns (``n_questions``,
    ``n_questions_turn1/2``, ``n_prompts``), inserted after the metric they belong to."""
    out = []
    for row in table:
        j = judgments.get(row["model"]) or {}
        extra: dict[str, dict[str, Any]] = {}
        if _finite(row.get("judge_score")):
            extra["judge_score"] = _ci_cols("judge_score", list(per_question(j).values()),
                                            "n_questions")
        for t in (1, 2):
            m = f"mtbench_turn{t}"
            if _finite(row.get(m)):
                extra[m] = _ci_cols(m, list(per_question(j, t).values()), f"n_questions_turn{t}")
        pp = per_prompt(j)
        if pp is not None and _finite(row.get("win_rate_vs_sft")):
            extra["win_rate_vs_sft"] = _ci_cols("win_rate_vs_sft",
                                                [x for x in pp if x is not None], "n_prompts")
        new: dict[str, Any] = {}
        for k, v in row.items():
            new[k] = v
            new.update(extra.get(k, {}))
        out.append(new)
    return out


def per_item_files(judgments: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{file name: body} of the per-item convention: MT-Bench per question (ids judged for every
    model) and win rate per held-out prompt (every model judged against SFT; prompts with an
    error in any model are left out)."""
    out: dict[str, dict[str, Any]] = {}
    pq = {m: per_question(j) for m, j in judgments.items()}
    pq = {m: v for m, v in pq.items() if v}
    if pq:
        ids = sorted(set.intersection(*(set(v) for v in pq.values())), key=_qkey)
        if ids:
            out["mtbench_score"] = {
                "metric": "mtbench_score", "higher_is_better": True,
                "unit": "judge rating 1-10, mean over a question's turns", "ids": ids,
                "values": {m: [v[q] for q in ids] for m, v in pq.items()}}
    pp = {m: per_prompt(j) for m, j in judgments.items()}
    pp = {m: v for m, v in pp.items() if v is not None}
    if pp:
        n = min(len(v) for v in pp.values())
        keep = [i for i in range(n) if all(v[i] is not None for v in pp.values())]
        if keep:
            out["win_rate_vs_sft"] = {
                "metric": "win_rate_vs_sft", "higher_is_better": True,
                "unit": "P(win) + P(tie)/2 vs SFT, both orders averaged",
                "ids": [f"prompt{i}" for i in keep],
                "values": {m: [v[i] for i in keep] for m, v in pp.items()}}
    return out


def _qkey(q: str):
    return (0, int(q)) if q.isdigit() else (1, q)


def load_judgments(judgments_dir: Path, models: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in models:
        f = Path(judgments_dir) / f"{slug(m)}.json"
        if f.exists():
            out[m] = read_json(f)
    return out


def finish_table(table: list[dict[str, Any]], artifacts: str | Path,
                 judgments_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The evaluate stage's last step: read the grades, write the per-item files into
    ``artifacts/per_item/`` and return the table with its CI and n columns."""
    artifacts = Path(artifacts)
    jdir = Path(judgments_dir) if judgments_dir is not None else artifacts / "judgments"
    judgments = load_judgments(jdir, [r["model"] for r in table])
    for name, body in per_item_files(judgments).items():
        write_json(artifacts / "per_item" / f"{name}.json", body)
    return add_uncertainty(table, judgments)
