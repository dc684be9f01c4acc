"""run_seft(cfg): reviser training, SFT/DPO/ORPO baselines, self-evolution rounds, judged table.

Stages and what each leaves in the run folder (a killed run restarts from the last finished one):

- ``checkpoints/reviser_final/``           reviser (merged), ``stage.json`` written last = done;
- ``checkpoints/{sft,dpo,orpo}_final/``    each baseline, same marker;
- ``artifacts/round{r}_data.json``         the round's sampled + revised data (written before the
                                           policy is trained on it; a resumed round reuses it);
- ``checkpoints/round{r}_final/``          the policy after round r, same marker;
- ``artifacts/answers/<model>.json``       eval + MT-Bench two-turn answers per model;
- ``artifacts/judgments/<model>.json``     the judge's grades per model;
- ``metrics.json``                         written last (the run is complete).

Every stage starts from ``seed_everything(seed + stage offset)``, so a resumed run samples and
trains exactly as an uninterrupted one would. Models are saved, freed, and reloaded one at a time
for evaluation (only the policy and the reviser coexist, during a round); each round starts from
the previous round's saved checkpoint, so an uninterrupted and a resumed run take the same path.
"""

from __future__ import annotations

import gc
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.common import RunDir, load_causal_lm, seed_everything, track
from workbench.common.io import read_json, write_json
from workbench.eval.chat import (
    WEAK_JUDGE_NOTE,
    is_weak,
    judge_tag,
    make_judge,
    mtbench_answers_batch,
    mtbench_pairwise,
    mtbench_score,
    win_rate,
)
from workbench.seft.config import SEFTConfig
from workbench.seft.pref_sources import hh_user_turn, load_pref_pairs
from workbench.seft.reviser_data import build_reviser_examples
from workbench.seft.training import (
    generate_chat,
    reviser_discrimination,
    reviser_input_limit,
    reviser_messages,
    sample_and_revise,
    train_on_revised,
    train_preference,
    train_sft,
)

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"


@dataclass
class SEFTResult:
    run_dir: Path
    metrics: dict[str, Any]


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """JSON lines of ``what`` (pref_data / prompt_source); a bad line -> ValueError naming both."""
    from workbench.data.mtbench import _read_jsonl as read_lines
    try:
        rows = read_lines(path)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{what} {path.name}: record {i} is not a JSON object")
    return rows


def _pref_rows(cfg: SEFTConfig) -> list[dict[str, Any]]:
    """Preference pairs (prompt / chosen_response / rejected_response; unusable rows kept, with
    None fields, so they are skipped and counted): enough for ``pref_size`` training pairs and
    ``reviser_eval_pairs`` held-out ones."""
    need = cfg.pref_size + cfg.reviser_eval_pairs
    if cfg.pref_data == "hh_rlhf":
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        out = []
        for i in range(len(ds)):  # single-turn HH rows only; prompt = the user's text
            r = ds[i]
            if r["prompt"].count("Human:") == 1:
                out.append({**r, "prompt": hh_user_turn(r["prompt"])})
            if len(out) >= need * 2:
                break
        return out
    return load_pref_pairs(cfg.pref_data, split=cfg.pref_split, ranked=cfg.ranked_pairs,
                           limit=None if Path(cfg.pref_data).is_file() else need * 4 + 64)


def _prompt_candidates(cfg: SEFTConfig, n: int) -> list[str]:
    if cfg.prompt_source == "sharegpt":
        from workbench.data import load_sharegpt
        ds = load_sharegpt(limit=n * 4 + 16)
        return [m[0]["content"] for m in ds["messages"] if m and m[0]["role"] == "user"]
    if cfg.prompt_source == "hh_rlhf":
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        return [hh_user_turn(ds[i]["prompt"]) for i in range(len(ds) - 1, -1, -1)
                if ds[i]["prompt"].count("Human:") == 1][: n * 4 + 64]
    path = Path(cfg.prompt_source)
    if not path.is_file():
        raise ValueError(f"prompt_source {cfg.prompt_source!r}: not hh_rlhf|sharegpt and not a file")
    if path.suffix == ".jsonl":
        return [str(r.get("prompt") or "") for r in _read_jsonl(path, "prompt_source")]
    return path.read_text(encoding="utf-8").splitlines()


def _prompt_pool(cfg: SEFTConfig, exclude: set[str], n: int) -> list[str]:
    """Up to ``n`` distinct non-empty prompts (< 1500 chars) not in ``exclude``."""
    out, seen = [], set(exclude)
    for p in _prompt_candidates(cfg, n):
        p = p.strip()
        if p and p not in seen and len(p) < 1500:
            seen.add(p)
            out.append(p)
        if len(out) >= n:
            break
    return out


def mtbench_subset(questions: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` MT-Bench questions round-robin over categories (first of each category, then the
    second, ...), so small ``n`` still covers writing .. humanities."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        by_cat.setdefault(q["category"], []).append(q)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < n and any(depth < len(v) for v in by_cat.values()):
        out += [v[depth] for v in by_cat.values() if depth < len(v)]
        depth += 1
    return out[:n]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def _done(folder: Path) -> dict[str, Any] | None:
    f = folder / STAGE_FILE
    return read_json(f) if f.exists() else None


def _save_stage(model, tok, folder: Path, info: dict[str, Any]) -> None:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_json(folder / STAGE_FILE, info)  # last: marks the stage finished


def _gc() -> None:
    gc.collect()


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def _all_answers(ans: dict[str, Any]) -> list[str]:
    return list(ans["eval"]) + [a for q in ans["mtbench"] for a in q["answers"]]


def _same_share(ans: dict[str, Any], sft: dict[str, Any] | None) -> float | None:
    """Share of a model's answers (held-out + MT-Bench turns) identical to SFT's: a model that
    barely moved from its start answers like the others, and a 0.5 win rate then means nothing."""
    if sft is None:
        return None
    a, b = _all_answers(ans), _all_answers(sft)
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None


def judge_answers(judge, answers: dict[str, dict[str, Any]], out_dir: Path, *,
                  judge_prompts: dict | None = None, pairwise: bool = False
                  ) -> list[dict[str, Any]]:
    """Grade saved answers (``{model: {"eval", "eval_prompts", "mtbench"}}``): MT-Bench two-turn
    single-answer scores per model and the pairwise win rate against ``SFT`` on the held-out
    prompts (plus MT-Bench pairwise when ``pairwise``). One JSON per model in ``out_dir`` (reused
    when present: judging resumes too). Returns the table rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = []
    for name in track(list(answers), desc="judging"):
        f = out_dir / f"{_slug(name)}.json"
        ans = answers[name]
        if not f.exists():
            mt = mtbench_score(judge, ans["mtbench"], judge_prompts=judge_prompts) \
                if ans["mtbench"] else {}
            out: dict[str, Any] = {"judge": judge.name, "mtbench": mt}
            if name != "SFT" and "SFT" in answers:
                out["win_rate"] = win_rate(judge, ans["eval_prompts"], ans["eval"],
                                           answers["SFT"]["eval"], judge_prompts=judge_prompts)
                if pairwise and ans["mtbench"]:
                    out["mtbench_pairwise"] = mtbench_pairwise(
                        judge, ans["mtbench"], answers["SFT"]["mtbench"],
                        judge_prompts=judge_prompts)
            write_json(f, _nan_to_none(out))
        j = read_json(f)
        mt = j.get("mtbench") or {}
        wr = j.get("win_rate")
        row = {"model": name,
               "mtbench_turn1": mt.get("turn1"), "mtbench_turn2": mt.get("turn2"),
               "judge_score": mt.get("score"),
               "win_rate_vs_sft": (0.5 if name == "SFT" else None) if wr is None
               else wr["win_rate"],
               "n_ratings": mt.get("n", 0), "n_unparsed": mt.get("n_unparsed", 0),
               "n_loose": mt.get("n_loose", 0), "n_forced_ratings": mt.get("n_forced", 0),
               "n_forced": mt.get("n_forced", 0) + (wr or {}).get("n_forced", 0),
               "n_pair_errors": (wr or {}).get("error", 0),
               "same_answers_as_sft": _same_share(ans, answers.get("SFT"))}
        if pairwise:
            pw = j.get("mtbench_pairwise")
            row["mtbench_win_rate_vs_sft"] = (0.5 if name == "SFT" else None) if pw is None \
                else pw["win_rate"]
        table.append(row)
    return table


def judge_warnings(table: list[dict[str, Any]]) -> list[str]:
    """Say when the judge's ratings are not what MT-Bench assumes: unparseable ones (left out), and
    ratings mostly obtained by forced continuation (a judge that does not follow the format; the
    prompts' own example is ``[[5]]``, which such a judge tends to echo)."""
    out = []
    n = sum(r["n_ratings"] for r in table)
    bad = sum(r["n_unparsed"] for r in table)
    forced = sum(r.get("n_forced_ratings", 0) for r in table)
    if bad:
        out.append(f"judge: {bad} of {n} MT-Bench ratings unparseable (excluded from the means, "
                   "not imputed)")
    if n and forced * 2 > n:
        out.append(f"judge: {forced} of {n} MT-Bench ratings came from forced continuation (the "
                   "judge did not write a rating itself): the scores carry little or no signal")
    return out


def rejudge(run_dir: str | Path, *, judge: str = "auto", judge_model: str | None = None,
            max_new_tokens: int = 128, batch_size: int = 4,
            pairwise: bool = False, mode: str = "expected") -> list[dict[str, Any]]:
    """Grade a run's saved answers with another judge (e.g. a stronger endpoint, or the larger
    local model when the run used a smaller one). Writes ``artifacts/judgments-<judge>/`` and
    ``artifacts/table-<judge>.json``; the run's own ``metrics.json`` is left as it is."""
    run_dir = Path(run_dir)
    adir = run_dir / "artifacts" / "answers"
    if not adir.is_dir() or not any(adir.glob("*.json")):
        raise ValueError(f"rejudge: {run_dir} has no saved answers (artifacts/answers/*.json)")
    answers = {d["model"]: d for d in (read_json(f) for f in sorted(adir.glob("*.json")))}
    j = make_judge(judge, judge_model, mode, max_new_tokens=max_new_tokens, batch_size=batch_size)
    from workbench.data import load_judge_prompts
    tag = judge_tag(j)
    table = judge_answers(j, answers, run_dir / "artifacts" / f"judgments-{tag}",
                          judge_prompts=load_judge_prompts(), pairwise=pairwise)
    write_json(run_dir / "artifacts" / f"table-{tag}.json",
               _nan_to_none({"judge": j.name, "judge_note": WEAK_JUDGE_NOTE if is_weak(j) else "",
                             "table": table, "warnings": judge_warnings(table)}))
    return _nan_to_none(table)


def run_seft(cfg: SEFTConfig) -> SEFTResult:
    """The whole SEFT experiment; resumes from the last finished stage of the same run folder."""
    t0 = time.time()
    if cfg.num_threads:
        import torch
        torch.set_num_threads(cfg.num_threads)
    run = RunDir.create(cfg, kind="seft")
    ck = run.checkpoints
    tr_kw = dict(lora=cfg.lora, epochs=cfg.epochs, batch_size=cfg.batch_size,
                 max_steps=cfg.max_steps, seed=cfg.seed, max_length=cfg.max_length,
                 bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing)
    warnings: list[str] = []

    # --- data -------------------------------------------------------------------------------
    raw = _pref_rows(cfg)
    _, all_stats = build_reviser_examples(raw, include_keep=cfg.include_keep)
    skipped = set(all_stats.skipped_rows)
    usable = [r for i, r in enumerate(raw) if i not in skipped]
    used = usable[: cfg.pref_size]
    heldout = usable[cfg.pref_size: cfg.pref_size + cfg.reviser_eval_pairs]
    if not used:
        raise ValueError(f"pref_data {cfg.pref_data!r}: no usable preference rows "
                         f"({all_stats.skipped_missing} missing a field, "
                         f"{all_stats.skipped_identical} with identical chosen/rejected)")
    examples, dstats = build_reviser_examples(used, include_keep=cfg.include_keep)
    data_info = {**dstats.as_dict(), "rows_read": all_stats.n_input,
                 "rows_skipped_missing": all_stats.skipped_missing,
                 "rows_skipped_identical": all_stats.skipped_identical}
    if all_stats.skipped_missing or all_stats.skipped_identical:
        warnings.append(f"preference data: skipped {all_stats.skipped_missing} rows missing a "
                        f"field and {all_stats.skipped_identical} with identical chosen/rejected")
    run.write_artifact_json("reviser_data_stats.json", data_info)
    n_pool = cfg.rounds * cfg.prompts_per_round + cfg.eval_prompts
    pool = _prompt_pool(cfg, {r["prompt"].strip() for r in used + heldout}, n_pool)
    if len(pool) < n_pool:
        raise ValueError(f"prompt_source {cfg.prompt_source!r}: the prompt pool has {len(pool)} "
                         f"usable prompts, need {n_pool} (rounds * prompts_per_round + "
                         "eval_prompts)")
    eval_prompts, pool = pool[: cfg.eval_prompts], pool[cfg.eval_prompts:]
    stage_seconds: dict[str, float] = {}

    # --- reviser ------------------------------------------------------------------------------
    rdir = ck / "reviser_final"
    rev_limit = reviser_input_limit(cfg.max_length)
    info = _done(rdir)
    if info is None:
        ts = time.time()
        seed_everything(cfg.seed)
        rev, rtok = load_causal_lm(cfg.reviser_base)
        before = reviser_discrimination(rev, rtok, heldout, max_input_tokens=rev_limit)
        rev_kw = {**tr_kw, "epochs": cfg.reviser_epochs if cfg.reviser_epochs is not None
                  else cfg.epochs, "max_steps": cfg.reviser_max_steps
                  if cfg.reviser_max_steps is not None else cfg.max_steps}
        rev, rloss = train_sft(rev, rtok, reviser_messages(rtok, examples, rev_limit),
                               ck / "reviser", lr=cfg.lr, stage="reviser", **rev_kw)
        after = reviser_discrimination(rev, rtok, heldout, max_input_tokens=rev_limit)
        info = {"loss": rloss, "seconds": time.time() - ts,
                "heldout": {"before_training": before, "after_training": after}}
        _save_stage(rev, rtok, rdir, info)
        del rev, rtok
        _gc()
    else:
        log.info("resume: reviser already trained (%s)", rdir)
    rloss = info["loss"]
    reviser_heldout = info.get("heldout") or {}
    stage_seconds["reviser"] = info["seconds"]
    ho = reviser_heldout.get("after_training") or {"n_pairs": 0}
    if ho["n_pairs"] and ho["share_revise_rejected"] <= ho["share_revise_chosen"]:
        warnings.append(f"reviser: on {ho['n_pairs']} held-out pairs it revises the rejected "
                        f"responses no more often than the chosen ones "
                        f"({ho['share_revise_rejected']:.2f} vs {ho['share_revise_chosen']:.2f}): "
                        "its decisions carry no preference signal")

    # --- baselines ----------------------------------------------------------------------------
    model_dirs: dict[str, Path] = {}
    baseline_loss: dict[str, float] = {}
    for k, b in enumerate(track(cfg.baselines, desc="baselines"), 1):
        bdir = ck / f"{b}_final"
        info = _done(bdir)
        if info is None:
            ts = time.time()
            seed_everything(cfg.seed + 100 * k)
            m, ptok = load_causal_lm(cfg.policy)
            if b == "sft":
                msgs = [[{"role": "user", "content": r["prompt"]},
                         {"role": "assistant", "content": r["chosen_response"]}] for r in used]
                m, loss = train_sft(m, ptok, msgs, ck / "sft", lr=cfg.lr, stage="sft", **tr_kw)
            else:
                m, loss = train_preference(b, m, ptok, used, ck / b, lr=cfg.pref_lr,
                                           beta=cfg.beta, **tr_kw)
            info = {"loss": loss, "seconds": time.time() - ts}
            _save_stage(m, ptok, bdir, info)
            del m
            _gc()
        else:
            log.info("resume: baseline %s already trained", b)
        baseline_loss[b] = info["loss"]
        stage_seconds[b] = info["seconds"]
        model_dirs[b.upper()] = bdir

    # --- self-evolution -----------------------------------------------------------------------
    rounds: list[dict[str, Any]] = []
    policy = ptok = rev = rtok = ext = None
    prev_dir: Path | None = None
    for r in track(range(1, cfg.rounds + 1), desc="SEFT rounds"):
        fdir = ck / f"round{r}_final"
        info = _done(fdir)
        if info is None:
            ts = time.time()
            if policy is None:
                policy, ptok = load_causal_lm(str(prev_dir) if prev_dir else cfg.policy)
            if rev is None:
                rev, rtok = load_causal_lm(str(rdir))
            data_f = run.artifacts / f"round{r}_data.json"
            reused = data_f.exists()
            if reused:  # killed after revising: train on the same data
                saved = read_json(data_f)
                rows, stats = saved["rows"], saved["stats"]
                log.info("resume: round %d data reused (%d rows)", r, len(rows))
            else:
                seed_everything(cfg.seed + 1000 * r)
                prompts = pool[(r - 1) * cfg.prompts_per_round: r * cfg.prompts_per_round]
                ext_resp = None
                if cfg.evolution == "external":
                    if ext is None:
                        ext = load_causal_lm(cfg.external_model)
                    ext_resp = generate_chat(ext[0], ext[1], prompts,
                                             max_new_tokens=cfg.max_new_tokens)
                rows, stats = sample_and_revise(
                    policy, ptok, rev, rtok, prompts, external_responses=ext_resp,
                    max_new_tokens=cfg.max_new_tokens,
                    reviser_max_new_tokens=cfg.reviser_max_new_tokens, decision=cfg.decision,
                    max_input_tokens=rev_limit)
                stats["seconds_sample_revise"] = time.time() - ts
                write_json(data_f, {"round": r, "stats": stats, "rows": rows})
            seed_everything(cfg.seed + 1000 * r + 1)
            policy, loss = train_on_revised(policy, ptok, rows, ck / f"round{r}", lr=cfg.lr,
                                            **tr_kw)
            # a resumed round counts its earlier sampling/revising time too
            info = {**stats, "train_loss": loss, "round": r, "evolution": cfg.evolution,
                    "seconds": time.time() - ts + (stats["seconds_sample_revise"] if reused
                                                   else 0.0)}
            _save_stage(policy, ptok, fdir, info)
        else:
            log.info("resume: round %d already finished", r)
        # the next round reloads the policy from fdir, whether this run trained it or a killed
        # one did: both paths then start from the same saved weights (exact resume)
        policy = None
        _gc()
        run.write_artifact_json(f"round{r}_stats.json", info)
        rounds.append(info)
        stage_seconds[f"round{r}"] = info["seconds"]
        model_dirs[f"SEFT round {r}"] = fdir
        prev_dir = fdir
        if info.get("never_revised"):
            warnings.append(f"round {r}: the reviser revised none of {info['n']} responses "
                            f"({info['n_malformed']} malformed outputs): the policy was trained "
                            "on its own responses")
        elif info.get("n_malformed"):
            warnings.append(f"round {r}: {info['n_malformed']} of {info['n']} reviser outputs "
                            "malformed (treated as KEEP)")
    policy = rev = ext = None
    _gc()

    # --- answers: one model in memory at a time -------------------------------------------------
    from workbench.data import load_judge_prompts, load_mtbench_questions
    jp = load_judge_prompts()
    qs_all = load_mtbench_questions()
    qs = mtbench_subset([qs_all[i] for i in range(len(qs_all))], cfg.mtbench_limit)
    adir = run.artifacts / "answers"
    adir.mkdir(exist_ok=True)
    answers: dict[str, dict[str, Any]] = {}
    gen = dict(max_new_tokens=cfg.max_new_tokens, do_sample=False)
    for name in track(list(model_dirs), desc="answers"):
        f = adir / f"{_slug(name)}.json"
        if not f.exists():
            m, tok = load_causal_lm(str(model_dirs[name]))
            ev = generate_chat(m, tok, eval_prompts, **gen)
            mt = mtbench_answers_batch(lambda convs, m=m, tok=tok: generate_chat(m, tok, convs,
                                                                                 **gen), qs)
            write_json(f, {"model": name, "eval_prompts": eval_prompts, "eval": ev,
                           "mtbench": mt})
            del m, tok
            _gc()
        answers[name] = read_json(f)

    # --- judging ------------------------------------------------------------------------------
    judge = make_judge(cfg.judge, cfg.judge_model, cfg.judge_mode,
                       max_new_tokens=cfg.judge_max_new_tokens, batch_size=cfg.judge_batch_size)
    table = judge_answers(judge, answers, run.artifacts / "judgments", judge_prompts=jp,
                          pairwise=cfg.mtbench_pairwise)
    warnings += judge_warnings(table)

    never = [s["round"] for s in rounds if s.get("never_revised")]
    metrics = {
        "table": table, "rounds": rounds, "reviser_train_loss": rloss,
        "reviser_heldout": reviser_heldout, "decision": cfg.decision,
        "baseline_train_loss": baseline_loss, "reviser_data": data_info,
        "judge": judge.name, "judge_note": WEAK_JUDGE_NOTE if is_weak(judge) else "",
        "mtbench_questions": [q["question_id"] for q in qs],
        "n_eval_prompts": len(eval_prompts),
        "never_revised_rounds": never, "warnings": warnings,
        "stage_seconds": stage_seconds,
        "seconds_per_round": sum(s["seconds"] for s in rounds) / len(rounds),
        "seconds_this_invocation": time.time() - t0,
    }
    for w in warnings:
        log.warning("%s", w)
    metrics = _nan_to_none(metrics)
    run.finish(metrics)
    return SEFTResult(run.path, metrics)
