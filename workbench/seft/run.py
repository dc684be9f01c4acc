"""run_seft(cfg): reviser training, self-evolution rounds, SFT/DPO/ORPO baselines, judged table."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.common import RunDir, load_causal_lm, seed_everything, track
from workbench.eval.chat import WEAK_JUDGE_NOTE, is_weak, make_judge, mtbench_score, win_rate
from workbench.seft.config import SEFTConfig
from workbench.seft.reviser_data import build_reviser_examples
from workbench.seft.training import evolution_round, generate_chat, train_preference, train_sft

log = logging.getLogger(__name__)


@dataclass
class SEFTResult:
    run_dir: Path
    metrics: dict[str, Any]


def _hh_user(prompt: str) -> str:
    return prompt.split("Human:", 1)[-1].rsplit("Assistant:", 1)[0].strip()


def _pref_rows(cfg: SEFTConfig) -> list[dict[str, Any]]:
    if cfg.pref_data == "hh_rlhf":
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        out = []
        for i in range(len(ds)):  # single-turn HH rows only; prompt = the user's text
            r = ds[i]
            if r["prompt"].count("Human:") == 1:
                out.append({**r, "prompt": _hh_user(r["prompt"])})
            if len(out) >= cfg.pref_size * 2:
                break
        return out
    import json
    rows = [json.loads(line) for line in Path(cfg.pref_data).read_text().splitlines() if line.strip()]
    return rows


def _prompt_pool(cfg: SEFTConfig, exclude: set[str], n: int) -> list[str]:
    if cfg.prompt_source == "sharegpt":
        from workbench.data import load_sharegpt
        ds = load_sharegpt(limit=n * 4 + 16)
        cand = [m[0]["content"] for m in ds["messages"] if m and m[0]["role"] == "user"]
    else:
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        cand = [_hh_user(ds[i]["prompt"]) for i in range(len(ds) - 1, -1, -1)
                if ds[i]["prompt"].count("Human:") == 1][: n * 4 + 64]
    out, seen = [], set(exclude)
    for p in cand:
        p = p.strip()
        if p and p not in seen and len(p) < 1500:
            seen.add(p)
            out.append(p)
        if len(out) >= n:
            break
    return out


def run_seft(cfg: SEFTConfig) -> SEFTResult:
    t0 = time.time()
    seed_everything(cfg.seed)
    run = RunDir.create(cfg, kind="seft")
    ck = run.checkpoints
    tr_kw = dict(lora=cfg.lora, epochs=cfg.epochs, batch_size=cfg.batch_size,
                 max_steps=cfg.max_steps, seed=cfg.seed, max_length=cfg.max_length)

    # --- data -------------------------------------------------------------------------------
    raw = _pref_rows(cfg)
    examples, dstats = build_reviser_examples(raw, include_keep=cfg.include_keep)
    used = [r for i, r in enumerate(raw) if i not in set(dstats.skipped_rows)][: cfg.pref_size]
    examples, dstats = build_reviser_examples(used, include_keep=cfg.include_keep)
    run.write_artifact_json("reviser_data_stats.json", dstats.as_dict())
    n_pool = cfg.rounds * cfg.prompts_per_round + cfg.eval_prompts
    pool = _prompt_pool(cfg, {r["prompt"].strip() for r in used}, n_pool)
    if len(pool) < n_pool:
        raise ValueError(f"prompt pool has {len(pool)} prompts, need {n_pool} "
                         "(rounds * prompts_per_round + eval_prompts)")
    eval_prompts, pool = pool[: cfg.eval_prompts], pool[cfg.eval_prompts:]

    # --- reviser ------------------------------------------------------------------------------
    rev, rtok = load_causal_lm(cfg.reviser_base)
    rev, rloss = train_sft(rev, rtok, [e["messages"] for e in examples], ck / "reviser",
                           lr=cfg.lr, stage="reviser", **tr_kw)
    rev.save_pretrained(ck / "reviser_final")
    rtok.save_pretrained(ck / "reviser_final")

    # --- baselines ----------------------------------------------------------------------------
    models: dict[str, Any] = {}
    ptok = None
    for b in track(cfg.baselines, desc="baselines"):
        m, ptok = load_causal_lm(cfg.policy)
        if b == "sft":
            msgs = [[{"role": "user", "content": r["prompt"]},
                     {"role": "assistant", "content": r["chosen_response"]}] for r in used]
            m, loss = train_sft(m, ptok, msgs, ck / "sft", lr=cfg.lr, stage="sft", **tr_kw)
        else:
            m, loss = train_preference(b, m, ptok, used, ck / b, lr=cfg.pref_lr, beta=cfg.beta,
                                       **tr_kw)
        models[b.upper()] = m

    # --- self-evolution -----------------------------------------------------------------------
    policy, ptok = load_causal_lm(cfg.policy)
    ext = load_causal_lm(cfg.external_model) if cfg.evolution == "external" else None
    rounds: list[dict[str, Any]] = []
    for r in track(range(1, cfg.rounds + 1), desc="SEFT rounds"):
        tr = time.time()
        prompts = pool[(r - 1) * cfg.prompts_per_round: r * cfg.prompts_per_round]
        ext_resp = (generate_chat(ext[0], ext[1], prompts, max_new_tokens=cfg.max_new_tokens)
                    if ext else None)
        policy, stats, rows = evolution_round(
            policy, ptok, rev, rtok, prompts, ck / f"round{r}", external_responses=ext_resp,
            lr=cfg.lr, max_new_tokens=cfg.max_new_tokens,
            reviser_max_new_tokens=cfg.reviser_max_new_tokens, **tr_kw)
        stats.update(round=r, seconds=time.time() - tr, evolution=cfg.evolution)
        run.write_artifact_json(f"round{r}_data.json", rows)
        run.write_artifact_json(f"round{r}_stats.json", stats)
        rounds.append(stats)
        models[f"SEFT round {r}"] = policy
        if r < cfg.rounds:  # keep a snapshot of this round's policy for the table
            import copy
            models[f"SEFT round {r}"] = copy.deepcopy(policy)

    # --- evaluation ---------------------------------------------------------------------------
    judge = make_judge(cfg.judge, cfg.judge_model, **(
        {"max_new_tokens": cfg.judge_max_new_tokens} if cfg.judge != "openai" and not (
            cfg.judge == "auto" and __import__("os").environ.get("WORKBENCH_JUDGE_BASE_URL"))
        else {}))
    from workbench.data import load_judge_prompts, load_mtbench_questions
    jp = load_judge_prompts()
    qs = load_mtbench_questions()
    qs = [qs[i] for i in range(min(len(qs), cfg.mtbench_limit))]
    mt_q = [q["turns"][0] for q in qs]
    answers = {name: generate_chat(m, ptok, eval_prompts + mt_q, max_new_tokens=cfg.max_new_tokens,
                                   do_sample=False) for name, m in models.items()}
    table = []
    for name in track(list(models), desc="judging"):
        ans = answers[name]
        mt = mtbench_score(judge, [{"turns": [q], "answers": [a]} for q, a in
                                   zip(mt_q, ans[len(eval_prompts):], strict=True)],
                           judge_prompts=jp)
        if name == "SFT" or "SFT" not in answers:
            wr = {"win_rate": 0.5 if name == "SFT" else float("nan")}
        else:
            wr = win_rate(judge, eval_prompts, ans[: len(eval_prompts)],
                          answers["SFT"][: len(eval_prompts)], judge_prompts=jp)
        table.append({"model": name, "judge_score": mt["score"], "win_rate_vs_sft": wr["win_rate"],
                      "n_unparsed": mt["n_unparsed"]})
    run.write_artifact_json("answers.json", {"eval_prompts": eval_prompts, "mtbench": mt_q,
                                             "answers": answers})
    never = [s["round"] for s in rounds if s["never_revised"]]
    metrics = {
        "table": table, "rounds": rounds, "reviser_train_loss": rloss,
        "reviser_data": dstats.as_dict(), "judge": judge.name,
        "judge_note": WEAK_JUDGE_NOTE if is_weak(judge) else "",
        "never_revised_rounds": never, "seconds": time.time() - t0,
        "seconds_per_round": (sum(s["seconds"] for s in rounds) / len(rounds)),
    }
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in metrics.items()}
    run.finish(metrics)
    return SEFTResult(run.path, metrics)
