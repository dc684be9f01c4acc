"""SEFT evaluation: greedy answers of every trained model (held-out prompts + MT-Bench, two
turns; ``artifacts/answers/<model>.json``), judged (``artifacts/judgments/<model>.json``), and
re-judging saved answers with another judge. Inference only: one model in memory at a time."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track
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
from workbench.seft.inference import generate_chat
from workbench.seft.stages.common import free, load


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


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


def _same_columns(ans: dict[str, Any], sft: dict[str, Any] | None) -> dict[str, Any]:
    """``same_answers_as_sft`` with its Wilson 95 % CI over the answers (``_n``)."""
    from workbench.eval.stats import proportion_ci

    share = _same_share(ans, sft)
    if share is None:
        return {"same_answers_as_sft": None}
    a, b = _all_answers(ans), _all_answers(sft)
    e = proportion_ci(sum(x == y for x, y in zip(a, b, strict=True)), len(a))
    return {"same_answers_as_sft": share, "same_answers_as_sft_lo": e.lo,
            "same_answers_as_sft_hi": e.hi, "same_answers_as_sft_n": e.n}


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
               **_same_columns(ans, answers.get("SFT"))}
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


def answer_all(cfg: SEFTConfig, model_dirs: dict[str, Path], eval_prompts: list[str],
               questions: list[dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Greedy answers of every model (held-out prompts, then both MT-Bench turns), one model
    loaded at a time (``cfg.device`` / ``cfg.dtype``; ``cfg.generation_backend`` vllm / auto:
    a vLLM engine on the model's folder instead); a saved answer file is reused."""
    from workbench.eval.generation import pick_backend

    out_dir.mkdir(exist_ok=True)
    answers: dict[str, dict[str, Any]] = {}
    for name in track(list(model_dirs), desc="answers"):
        f = out_dir / f"{_slug(name)}.json"
        if not f.exists():
            path = str(model_dirs[name])
            backend = pick_backend(cfg.generation_backend, path)
            if backend == "vllm":  # the engine loads the weights itself
                from workbench.common.models import load_tokenizer
                m, tok = None, load_tokenizer(path)
            else:
                m, tok = load(cfg, path)
            gen = dict(max_new_tokens=cfg.max_new_tokens, do_sample=False, backend=backend,
                       model_path=path)
            ev = generate_chat(m, tok, eval_prompts, **gen)
            mt = mtbench_answers_batch(lambda convs, m=m, tok=tok, gen=gen: generate_chat(
                m, tok, convs, **gen), questions)
            write_json(f, {"model": name, "eval_prompts": eval_prompts, "eval": ev,
                           "mtbench": mt})
            del m, tok
            free()
        answers[name] = read_json(f)
    return answers
