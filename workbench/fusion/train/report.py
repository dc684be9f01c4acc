"""FuseChat results over finished run folders: the paired held-out CE difference of two models
with its standard error, one table over runs that differ only in the seed, and re-grading a run's
saved MT-Bench answers with another judge or judge mode (nothing is generated again).

The evaluation stage also calls :func:`evaluation_report` (per-item files
``artifacts/per_item/heldout_ce.json`` / ``mtbench_judge.json``, 95 % CIs on the table rows,
paired comparisons with verdicts) and the training stages :func:`loss_summary` (the
response CE of each trained model and of the pivot on one fixed held-out batch: the training
log's first and last losses are on different batches and cannot be compared)."""

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
    judge_cis(rescored, table)
    write_json(run_dir / "artifacts" / f"table-{tag}.json",
               {"judge": j.name, "mode": getattr(j, "mode", "generate"), "table": table})
    return table


def seed_table(run_dirs: Sequence[str | Path], reference: str = "SFT",
               judgments: str | None = None) -> list[dict[str, Any]]:
    """One row per model over runs that differ only in the seed: held-out CE per seed, its mean
    (with a t interval over the seeds, ``n_seeds``) and spread, the paired CE difference to ``reference`` per seed (x 1e-4 nats, with SE), and
    the judge and zero-shot averages per seed. ``judgments``: take the judge scores from
    ``artifacts/judgments-<judgments>/`` (written by :func:`rejudge`) instead of the run's own."""
    from workbench.eval.stats import mean_ci

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
        m = mean_ci(ces)  # t interval over seeds (seed-to-seed spread)
        row: dict[str, Any] = {"model": label, "group": evals[0][label]["group"],
                               "ce": [round(c, 5) for c in ces],
                               "ce_mean": round(sum(ces) / len(ces), 5),
                               **{f"ce_mean_{k}": (round(v, 5) if math.isfinite(v) else None)
                                  for k, v in (("lo", m.lo), ("hi", m.hi), ("stderr", m.stderr))},
                               "n_seeds": m.n,
                               "ce_spread": round(max(ces) - min(ces), 5)}
        if all(reference in e for e in evals):
            pd = [paired_ce_diff(e[label]["heldout"], e[reference]["heldout"]) for e in evals]
            row[f"d_vs_{reference.lower()}_1e4"] = [round(1e4 * p["diff"], 2) for p in pd]
            row["se_1e4"] = [round(1e4 * p["se"], 2) for p in pd]
        row["judge"] = [_num(e[label].get("mtbench", {}).get("score")) for e in evals]
        row["zeroshot"] = [_num(e[label].get("zeroshot", {}).get("avg")) for e in evals]
        rows.append(row)
    return rows


# ---- per-item files, CIs and paired comparisons of the evaluation stage ------------------------
# (model a, model b): the claim "a is better than b" that each comparison tests, by group / label
SCE = "SCE"
OTHER_MERGES = ("linear", "task_arithmetic", "ties", "dare_linear")


def _ce_items(heldout: dict[str, Any]) -> tuple[list[float], list[int]]:
    per = heldout["per_dialogue"]
    return ([p["nll_sum"] / p["n_tokens"] if p["n_tokens"] else math.nan for p in per],
            [int(p["n_tokens"]) for p in per])


def comparison_pairs(results: dict[str, dict[str, Any]], reference: str = "SFT"
                     ) -> list[tuple[str, str]]:
    """(a, b) pairs whose paired differences the report shows: every target and SCE vs the pivot,
    every target vs ``reference``, SCE vs every target, SCE vs every other merge."""
    groups = {k: r.get("group") for k, r in results.items()}
    pivot = next((k for k, g in groups.items() if g == "pivot"), None)
    targets = [k for k, g in groups.items() if g == "target"]
    pairs: list[tuple[str, str]] = []
    if reference in results:
        pairs += [(t, reference) for t in targets]
        if pivot:
            pairs.append((reference, pivot))
    if SCE in results:
        pairs += [(SCE, t) for t in targets]
        pairs += [(SCE, m) for m in OTHER_MERGES if m in results]
        if reference in results:
            pairs.append((SCE, reference))
    if pivot:
        pairs += [(t, pivot) for t in targets]
        if SCE in results:
            pairs.append((SCE, pivot))
    return list(dict.fromkeys(pairs))


def _judge_items(results: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, float]],
                                                               dict[str, dict[int, list[float]]]]:
    """Per model: {question: mean rating over its turns} and {turn: parsed ratings}."""
    judge, turns = {}, {}
    for k, r in results.items():
        by_q: dict[str, list[float]] = {}
        by_t: dict[int, list[float]] = {}
        for x in (r.get("mtbench") or {}).get("ratings") or []:
            if x.get("rating") is not None:
                by_q.setdefault(str(x["question_id"]), []).append(float(x["rating"]))
                by_t.setdefault(int(x.get("turn") or 0), []).append(float(x["rating"]))
        if by_q:
            judge[k] = {q: sum(v) / len(v) for q, v in by_q.items()}
            turns[k] = by_t
    return judge, turns


def _cols(prefix: str, e: Any, n_key: str | None = None) -> dict[str, Any]:
    """`stats.columns` without the value column (the row keeps its own); n only with `n_key`."""
    from workbench.eval.stats import columns

    out = columns(prefix, e, n_key=n_key or "n")
    out.pop(prefix)
    if n_key is None:
        out.pop("n")
    return out


def _relative(e: Any, ref_mean: float) -> Any:
    """A difference ``a - ref`` as percent of the reference's mean (the mean taken as fixed)."""
    from workbench.eval.stats import Estimate

    f = 100.0 / ref_mean
    return Estimate(e.value * f, e.lo * f, e.hi * f, e.n, e.stderr * abs(f), e.method)


def judge_cis(results: dict[str, dict[str, Any]], table: list[dict[str, Any]],
              reference: str = "SFT") -> tuple[list[str], dict[str, dict[str, float]]]:
    """Add the judge columns' 95 % CIs to ``table`` (in place): ``judge_t1``/``judge_t2`` over
    the model's rated questions of that turn (``judge_t1_n``...), ``judge_avg`` over the questions
    every model has a rating for (per-question mean of its turns; ``judge_n``) and
    ``judge_vs_<ref>_pct`` (paired over those questions, in percent of the reference's mean).
    ``workbench.eval.stats.item_ci`` / ``paired_item_ci``: a t interval under 20 questions, a
    bootstrap from 20 on; one question: n stated, no interval. Returns (question ids, scores)."""
    from workbench.eval.stats import item_ci, paired_item_ci

    judge, turns = _judge_items(results)
    qids = sorted(set.intersection(*(set(v) for v in judge.values())), key=str) if judge else []
    rel = f"judge_vs_{reference.lower()}_pct"
    for row in table:
        k = row["model"]
        for t in (1, 2):
            if turns.get(k, {}).get(t):
                row.update(_cols(f"judge_t{t}", item_ci(turns[k][t]), f"judge_t{t}_n"))
        if k in judge and qids:
            row.update(_cols("judge_avg", item_ci([judge[k][q] for q in qids]), "judge_n"))
            ref = [judge[reference][q] for q in qids] if reference in judge else []
            if row.get(rel) is not None and ref and sum(ref) > 0:
                d = paired_item_ci([judge[k][q] for q in qids], ref)
                row.update(_cols(rel, _relative(d, sum(ref) / len(ref)), f"{rel}_n"))
    return qids, judge


def evaluation_report(artifacts: Path, results: dict[str, dict[str, Any]],
                      dialogue_ids: Sequence[str], table: list[dict[str, Any]],
                      reference: str = "SFT") -> list[dict[str, Any]]:
    """Write the per-item files, add 95 % CIs to ``table``'s rows (in place) and return the
    paired comparisons.

    - ``per_item/heldout_ce.json``: per-dialogue response CE (nats per assistant token) of every
      model, plus ``weights`` = assistant tokens per dialogue in the pivot's tokenisation; the
      token-weighted mean of a row is its ``heldout_ce``. Dialogues without an assistant token
      in some model's tokenisation are left out.
    - ``per_item/nll_per_char.json``: per-dialogue NLL per assistant character, ``weights`` =
      characters (the same for every tokenizer); when the results record ``chars``.
    - ``per_item/mtbench_judge.json``: per question, the mean of its turns' judge ratings.
    - table rows: ``heldout_ce_lo/_hi/_stderr`` (over dialogues, of the token-weighted mean with
      the row's own token counts: ``stats.paired_item_ci`` -- bootstrap from 20 dialogues on,
      below the ratio estimator's t interval, as in the claims), ``n`` dialogues; ``heldout_ppl_lo/_hi`` = exp of the CE
      bounds (``_stderr`` by the delta method, ppl x CE stderr); ``nll_per_char_lo/_hi/_stderr``
      (over dialogues, char-weighted, likewise) and ``nll_per_char_n``; ``ce_vs_<ref>_pct_lo/_hi``
      (the paired CE difference, in percent of the reference's CE); the judge
      columns as :func:`judge_cis`.
    - comparisons: ``a - b`` of the token-weighted held-out CE (paired over dialogues, weights =
      tokens) and of the per-question judge score (``paired_item_ci``: paired t under
      20 questions, as the report's claims), each with its verdict for the claim "a is better"
      (CE: less; judge: greater).
    """
    import numpy as np

    from workbench.eval.stats import paired_item_ci, verdict

    ce = {k: _ce_items(r["heldout"]) for k, r in results.items() if r.get("heldout")}
    if not ce:
        return []
    keep = [i for i in range(len(dialogue_ids)) if all(t[1][i] > 0 for t in ce.values())]
    pivot = next((k for k, r in results.items() if r.get("group") == "pivot"), next(iter(ce)))
    weights = np.array([ce[pivot][1][i] for i in keep], dtype=float)
    values = {k: [float(v[0][i]) for i in keep] for k, v in ce.items()}
    same_tokens = {k for k, v in ce.items() if [v[1][i] for i in keep] == weights.tolist()}
    write_json(artifacts / "per_item" / "heldout_ce.json",
               {"metric": "heldout_ce", "higher_is_better": False, "unit": "nats/token",
                "ids": [str(dialogue_ids[i]) for i in keep], "values": values,
                "weights": weights.tolist(),
                "note": "per-dialogue response CE; rows are token-weighted means (weights)"})
    per_char = _per_char_items(results, dialogue_ids)
    if per_char is not None:
        write_json(artifacts / "per_item" / "nll_per_char.json",
                   {"metric": "nll_per_char", "higher_is_better": False, "unit": "nats/char",
                    **per_char, "note": "per-dialogue NLL per assistant character; rows are "
                                        "char-weighted means (weights)"})
    qids, judge = judge_cis(results, table, reference)
    if qids:
        write_json(artifacts / "per_item" / "mtbench_judge.json",
                   {"metric": "mtbench_judge", "higher_is_better": True, "unit": "rating 1-10",
                    "ids": qids, "values": {k: [v[q] for q in qids] for k, v in judge.items()}})
    zero = np.zeros(len(keep))
    rel = f"ce_vs_{reference.lower()}_pct"
    for row in table:
        k = row["model"]
        if k in values and keep:
            own = np.array([ce[k][1][i] for i in keep], dtype=float)
            e = paired_item_ci(values[k], zero, weights=weights if k in same_tokens else own)
            row.update(_cols("heldout_ce", e), n=e.n)
            row.update(heldout_ppl_lo=math.exp(e.lo) if math.isfinite(e.lo) else None,
                       heldout_ppl_hi=math.exp(e.hi) if math.isfinite(e.hi) else None,
                       heldout_ppl_stderr=math.exp(e.value) * e.stderr)
            if row.get(rel) is not None and k in same_tokens and reference in same_tokens:
                d = paired_item_ci(values[k], values[reference], weights=weights)
                ref_ce = float(np.dot(values[reference], weights) / weights.sum())
                row.update(_cols(rel, _relative(d, ref_ce)))
        if per_char is not None and k in per_char["values"]:
            w = per_char["weights"]
            e = paired_item_ci(per_char["values"][k], np.zeros(len(w)), weights=w)
            row.update(_cols("nll_per_char", e, "nll_per_char_n"))
    out = []
    for a, b in comparison_pairs(results, reference):
        row: dict[str, Any] = {"a": a, "b": b}
        if a in same_tokens and b in same_tokens:
            e = paired_item_ci(values[a], values[b], weights=weights)
            row.update(ce_diff=e.value, ce_diff_lo=e.lo, ce_diff_hi=e.hi, ce_diff_stderr=e.stderr,
                       n=e.n, ce_verdict=verdict(e, "less"))
        if a in judge and b in judge and qids:
            e = paired_item_ci([judge[a][q] for q in qids], [judge[b][q] for q in qids])
            row.update(judge_diff=e.value, judge_diff_lo=e.lo, judge_diff_hi=e.hi,
                       judge_diff_stderr=e.stderr, judge_n=e.n,
                       judge_verdict=verdict(e, "greater"))
        out.append(row)
    return out


def _per_char_items(results: dict[str, dict[str, Any]], dialogue_ids: Sequence[str]
                    ) -> dict[str, Any] | None:
    """{ids, values, weights} of per-dialogue NLL per character (dialogues with characters),
    or None when a result lacks ``chars`` (evaluated before they were recorded)."""
    per = {k: r["heldout"]["per_dialogue"] for k, r in results.items() if r.get("heldout")}
    chars = [[p.get("chars") for p in v] for v in per.values()]
    if not chars or any(None in c or c != chars[0] for c in chars):
        return None
    keep = [i for i, c in enumerate(chars[0]) if c and c > 0]
    if not keep:
        return None
    return {"ids": [str(dialogue_ids[i]) for i in keep],
            "values": {k: [v[i]["nll_sum"] / v[i]["chars"] for i in keep] for k, v in per.items()},
            "weights": [float(chars[0][i]) for i in keep]}


# ---- the training stages' loss summary on one fixed held-out batch ------------------------------
def fixed_batch_losses(cfg: Any, paths: dict[str, str | Path], batch: Sequence[Any],
                       cache: Path) -> dict[str, dict[str, Any]]:
    """``{name: {batch, before, after, delta, before_ci, after_ci, delta_ci}}``: response CE
    (nats per assistant token) of the pivot (``before``) and of each trained model (``after``)
    on the same dialogues ``batch``; the ``*_ci`` are ``Estimate.to_dict()`` (over the
    batch's dialogues, token-weighted; ``delta`` paired), None for a cache without per-dialogue
    scores. Scores are cached in ``cache`` (JSON, keyed by model folder), so a resumed stage does
    not score a model twice."""
    from workbench.common.models import load_causal_lm
    from workbench.fusion.train.evaluate import heldout_ce, placement

    ids = [d.id for d in batch]
    done = read_json(cache) if cache.exists() else {}
    if done.get("ids") != ids:
        done = {"ids": ids, "ce": {}, "per": {}}

    def score(path: str | Path) -> float:
        key = str(path)
        if key not in done["ce"]:
            model, tok = load_causal_lm(str(path), **placement(cfg))
            res = heldout_ce(model, tok, batch, cfg.max_length)
            done["ce"][key] = res["ce"]
            done.setdefault("per", {})[key] = [[p["nll_sum"], p["n_tokens"]]
                                               for p in res["per_dialogue"]]
            del model
            write_json(cache, done)
        return done["ce"][key]

    before = score(cfg.pivot)
    per = done.get("per") or {}
    out = {}
    for name, path in paths.items():
        after = score(path)
        out[name] = {"batch": ids, "before": before, "after": after, "delta": after - before,
                     **_batch_cis(per.get(str(cfg.pivot)), per.get(str(path)))}
    return out


def _batch_cis(before: list | None, after: list | None) -> dict[str, Any]:
    """95 % CIs of the fixed batch's CE before / after and of the paired change (token-weighted,
    over its dialogues: ``stats.paired_item_ci``, `workbench.eval.stats`)."""
    import numpy as np

    from workbench.eval.stats import paired_item_ci

    none = {"before_ci": None, "after_ci": None, "delta_ci": None}
    if not before or not after or len(before) != len(after):
        return none
    keep = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b[1] > 0 and a[1] > 0]
    if not keep:
        return none
    x = np.array([before[i][0] / before[i][1] for i in keep])
    y = np.array([after[i][0] / after[i][1] for i in keep])
    w, wa = np.array([before[i][1] for i in keep], float), np.array([after[i][1] for i in keep], float)
    zero = np.zeros(len(keep))
    out = {"before_ci": paired_item_ci(x, zero, weights=w).to_dict(),
           "after_ci": paired_item_ci(y, zero, weights=wa).to_dict(), "delta_ci": None}
    if np.array_equal(w, wa):  # the same tokenizer: a paired change per dialogue
        out["delta_ci"] = paired_item_ci(y, x, weights=w).to_dict()
    return out


def batch_columns(fixed: dict[str, Any]) -> dict[str, Any]:
    """Row columns of one :func:`fixed_batch_losses` entry: ``batch_ce_before``/``_after``/
    ``_delta`` with ``_lo``/``_hi``/``_stderr`` and ``batch_n`` (dialogues)."""
    cols: dict[str, Any] = {"batch_ce_before": fixed["before"], "batch_ce_after": fixed["after"],
                            "batch_ce_delta": fixed["delta"]}
    n = None
    for part in ("before", "after", "delta"):
        e = fixed.get(f"{part}_ci")
        if e:
            cols.update({f"batch_ce_{part}_{k}": e.get(k) for k in ("lo", "hi", "stderr")})
            n = e.get("n")
    cols["batch_n"] = n if n is not None else len(fixed.get("batch") or [])
    return cols


def loss_summary(ctx: Any, paths: dict[str, str | Path]) -> dict[str, dict[str, Any]]:
    """:func:`fixed_batch_losses` on the first ``batch_size x grad_accum`` held-out dialogues of
    the run (the evaluation stage's first ones), cached in ``artifacts/loss_batch.json``."""
    from workbench.fusion.train.evaluate import heldout_dialogues

    cfg = ctx.cfg
    n = cfg.batch_size * cfg.grad_accum
    small = cfg.replace(eval_size=min(n, cfg.eval_size)) if hasattr(cfg, "replace") else cfg
    train_ids = set(ctx.representations(cfg.pivot)["id"])
    batch = heldout_dialogues(small, train_ids, [ctx.tokenizer(m) for m in cfg.models])
    return fixed_batch_losses(cfg, paths, batch, ctx.run.artifacts / "loss_batch.json")
