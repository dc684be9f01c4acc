"""Chat evaluation with a pluggable LLM judge (MT-Bench single-answer and pairwise grading).

Judges (``workbench.eval.judges``, re-exported here; all expose ``complete(system, user) -> str``):
``HFJudge`` (local, weak: outputs say so), ``OpenAIJudge`` (endpoint), ``make_judge(kind="auto")``.

MT-Bench grading follows FastChat's ``llm_judge``: the judge prompts of
``workbench.data.load_judge_prompts()`` (``single-v1`` / ``single-math-v1`` for turn 1, their
``-multi-turn`` variants for turn 2, ``pair-v2`` / ``pair-math-v1`` (+ ``-multi-turn``) for pairwise);
the ``math`` variants with the GPT-4 reference answer for the categories that need one
(``NEED_REF_CATEGORIES``); the score of a model is the mean over all graded turns, reported with the
per-turn means as in the paper tables.

Parsing a judgment (never invents a score; every path is counted in the outputs):
1. ``strict``: ``[[7]]`` (MT-Bench's format); 2. ``bracket``: ``[7]`` (MT-Bench's own fallback);
3. ``loose``: ``Rating: 7`` / ``7/10`` / ``score of 7`` (last such mention);
4. ``forced`` (local judges only, ``force_format=True``): when 1-3 fail (typically the explanation
   hit ``max_new_tokens``), the judge's own text is continued with ``"\\n\\nRating: [["`` and the
   number it writes next is read -- the rating is still the judge model's greedy choice;
5. otherwise the rating is NaN and counted in ``n_unparsed``.
Verdicts likewise: ``[[A]]``/``[[B]]``/``[[C]]``, else forced ``"\\n\\nFinal verdict: [["``, else error.

Judge modes (``HFJudge(mode=...)``; ``JUDGE_MODES``):
- ``generate``: the protocol above -- the judge writes an explanation, then its rating/verdict;
- ``expected`` (local judges only): no explanation; the assistant turn is opened with
  ``"Rating: [["`` (``"Final verdict: [["`` for pairwise) and the judge's next-token
  probabilities over the allowed answers are read off one forward pass: the rating is the
  probability-weighted mean of 1..10 (G-Eval's score, arXiv 2303.16634), the verdict the most
  probable of A/B/C, and a pair's score for the model ``P(its letter) + P(C)/2`` renormalised over
  A/B/C. A small judge that echoes the prompts' ``[[5]]`` for every answer still ranks answers
  by how much probability it moves, so this mode is the offline default. ``mass`` records how
  much probability the allowed answers got before renormalising (low: the judge is off-format).
  An endpoint judge (no log-probabilities) always generates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from workbench.eval.judges import (  # noqa: F401  (re-exported: the judges' old home)
    DEFAULT_LOCAL_JUDGE,
    EXPECTED_RATING_PREFIX,
    EXPECTED_VERDICT_PREFIX,
    JUDGE_MODES,
    WEAK_JUDGE_NOTE,
    HFJudge,
    Judge,
    OpenAIJudge,
    is_weak,
    judge_tag,
    make_judge,
)

NEED_REF_CATEGORIES = ("math", "reasoning", "coding")  # FastChat llm_judge NEED_REF_CATS
RATING_SUFFIX = "\n\nRating: [["
VERDICT_SUFFIX = "\n\nFinal verdict: [["

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_FALLBACK = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")
_RATING_LOOSE = re.compile(
    r"(?:rating|score|grade)\s*(?:is|of|:|=)?\s*[*\s]*(\d+(?:\.\d+)?)(?!\s*\d)"
    r"|\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)
_FORCED_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_FORCED_VERDICT = re.compile(r"^\s*([ABC])(?![A-Za-z])")


# ---- parsing --------------------------------------------------------------------------------
def parse_rating_detail(text: str | None, lo: float = 1.0, hi: float = 10.0) -> tuple[float, str]:
    """-> (rating, method): method ``strict`` ([[7]]), ``bracket`` ([7]), ``loose`` (Rating: 7,
    7/10; last mention), or ``""`` with NaN when nothing in range is found."""
    if not text:
        return float("nan"), ""
    m = _RATING.search(text)
    if m:
        v = float(m.group(1))
        return (v, "strict") if lo <= v <= hi else (float("nan"), "")
    m = _RATING_FALLBACK.search(text)
    if m:
        v = float(m.group(1))
        return (v, "bracket") if lo <= v <= hi else (float("nan"), "")
    for m in reversed(list(_RATING_LOOSE.finditer(text))):
        v = float(m.group(1) or m.group(2))
        if lo <= v <= hi:
            return v, "loose"
    return float("nan"), ""


def parse_rating(text: str | None, lo: float = 1.0, hi: float = 10.0) -> float:
    """``[[7]]`` -> 7.0 (also ``[7]``, ``Rating: 7``, ``7/10``); missing/out of range -> NaN."""
    return parse_rating_detail(text, lo, hi)[0]


def parse_verdict(text: str | None) -> str:
    """``[[A]]``/``[[B]]``/``[[C]]`` -> "A"/"B"/"tie"; anything else -> "error"."""
    if not text:
        return "error"
    found = set(_VERDICT.findall(text))
    if len(found) != 1:
        return "error"
    v = found.pop()
    return "tie" if v == "C" else v


def _note(judge: Judge) -> str:
    return WEAK_JUDGE_NOTE if is_weak(judge) else ""


def _prompts(judge_prompts: dict | None) -> dict:
    if judge_prompts is None:
        from workbench.data import load_judge_prompts
        judge_prompts = load_judge_prompts()
    return judge_prompts


# ---- batched judging with the fallbacks -----------------------------------------------------
def _complete_all(judge: Judge, reqs: Sequence[tuple[str, str]]) -> list[str]:
    many = getattr(judge, "complete_many", None)
    return list(many(reqs)) if many else [judge.complete(s, u) for s, u in reqs]


def _expected(judge: Judge) -> bool:
    return getattr(judge, "mode", "generate") == "expected" and hasattr(judge,
                                                                       "rating_distributions")


def _can_force(judge: Judge) -> bool:
    return bool(getattr(judge, "force_format", False)) and hasattr(judge, "continue_many")


def rate_all(judge: Judge, reqs: Sequence[tuple[str, str]], lo: float = 1.0,
             hi: float = 10.0) -> list[dict[str, Any]]:
    """(system, user) judge requests -> [{rating, method, raw}] (method "" = unparsed, NaN).
    A judge in ``expected`` mode: method ``expected``, ``raw`` the rating distribution, ``mass``."""
    if _expected(judge):
        out = []
        for d in judge.rating_distributions(reqs, int(lo), int(hi)):
            ok = not math.isnan(d["rating"])
            out.append({"rating": d["rating"], "method": "expected" if ok else "",
                        "raw": json.dumps(d["probs"]), "mass": d["mass"]})
        return out
    raws = _complete_all(judge, reqs)
    out = []
    for raw in raws:
        v, how = parse_rating_detail(raw, lo, hi)
        out.append({"rating": v, "method": how, "raw": raw})
    todo = [i for i, o in enumerate(out) if not o["method"]]
    if todo and _can_force(judge):
        conts = judge.continue_many([(reqs[i][0], reqs[i][1], raws[i].rstrip() + RATING_SUFFIX)
                                     for i in todo])
        for i, c in zip(todo, conts, strict=True):
            m = _FORCED_NUMBER.match(c)
            if m and lo <= float(m.group(1)) <= hi:
                out[i].update(rating=float(m.group(1)), method="forced",
                              raw=raws[i].rstrip() + RATING_SUFFIX + c)
    return out


def verdict_all(judge: Judge, reqs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """(system, user) pairwise requests -> [{verdict: A|B|tie|error, method, raw}]; a judge in
    ``expected`` mode adds ``probs`` (A/B/C) and ``mass``, and the verdict is the most probable."""
    if _expected(judge):
        out = []
        for d in judge.verdict_distributions(reqs):
            if not d["probs"]:
                out.append({"verdict": "error", "method": "", "raw": "", "mass": d["mass"]})
                continue
            top = max("ABC", key=lambda c: d["probs"][c])
            out.append({"verdict": "tie" if top == "C" else top, "method": "expected",
                        "raw": json.dumps(d["probs"]), "probs": d["probs"], "mass": d["mass"]})
        return out
    raws = _complete_all(judge, reqs)
    out = []
    for raw in raws:
        v = parse_verdict(raw)
        out.append({"verdict": v, "method": "" if v == "error" else "strict", "raw": raw})
    todo = [i for i, o in enumerate(out) if o["verdict"] == "error"]
    if todo and _can_force(judge):
        conts = judge.continue_many([(reqs[i][0], reqs[i][1], raws[i].rstrip() + VERDICT_SUFFIX)
                                     for i in todo])
        for i, c in zip(todo, conts, strict=True):
            m = _FORCED_VERDICT.match(c)
            if m:
                out[i].update(verdict="tie" if m.group(1) == "C" else m.group(1), method="forced",
                              raw=raws[i].rstrip() + VERDICT_SUFFIX + c)
    return out


def _request(jp: dict, **kw: Any) -> tuple[str, str]:
    return jp.get("system_prompt", ""), jp["prompt_template"].format(**kw)


def _get_prompt(jp: dict, name: str) -> dict:
    if name not in jp:
        raise ValueError(f"judge_prompts has no {name!r} prompt (have: {sorted(jp)})")
    return jp[name]


def grade_single(judge: Judge, question: str, answer: str, *, judge_prompts: dict | None = None,
                 prompt_name: str = "single-v1", **extra: Any) -> tuple[float, str]:
    """MT-Bench single-answer grading -> (rating 1..10 or NaN, raw judgment).
    ``extra`` fills other template fields (e.g. ``ref_answer_1`` for ``single-math-v1``)."""
    req = _request(_prompts(judge_prompts)[prompt_name], question=question, answer=answer, **extra)
    r = rate_all(judge, [req])[0]
    return r["rating"], r["raw"]


def grade_pair(judge: Judge, question: str, answer_a: str, answer_b: str, *,
               judge_prompts: dict | None = None, prompt_name: str = "pair-v2",
               **extra: Any) -> tuple[str, str]:
    """MT-Bench pairwise grading -> ("A"|"B"|"tie"|"error", raw judgment)."""
    req = _request(_prompts(judge_prompts)[prompt_name], question=question, answer_a=answer_a,
                   answer_b=answer_b, **extra)
    r = verdict_all(judge, [req])[0]
    return r["verdict"], r["raw"]


def _pair_summary(judge: Judge, reqs: list[tuple[str, str]], ours: list[str],
                  groups: list[Any] | None = None) -> dict[str, Any]:
    """Score verdicts (win=1, tie=0.5, loss=0; errors dropped; ``expected`` mode: P(win) +
    P(tie)/2 from the judge's probabilities) -> win rate and counts."""
    res = verdict_all(judge, reqs)
    counts = {"win": 0, "tie": 0, "loss": 0, "error": 0}
    scores: list[float] = []
    per: dict[Any, list[float]] = {}
    for i, (r, o) in enumerate(zip(res, ours, strict=True)):
        if r["verdict"] == "error":
            counts["error"] += 1
            continue
        v = r["verdict"]
        counts["win" if v == o else "tie" if v == "tie" else "loss"] += 1
        s = (r["probs"][o] + 0.5 * r["probs"]["C"] if "probs" in r
             else 0.5 if v == "tie" else float(v == o))
        scores.append(s)
        if groups is not None:
            per.setdefault(groups[i], []).append(s)
    out = {"win_rate": sum(scores) / len(scores) if scores else float("nan"), **counts,
           "n_judgments": len(scores), "n_forced": sum(r["method"] == "forced" for r in res),
           "mode": "expected" if _expected(judge) else "generate",
           **({"mean_mass": _mean([r["mass"] for r in res])} if _expected(judge) else {}),
           "judge": judge.name, "judge_note": _note(judge),
           "verdicts": [{k: r[k] for k in ("verdict", "method")} for r in res]}
    if groups is not None:
        out["by_group"] = {g: sum(v) / len(v) for g, v in per.items()}
    return out


def win_rate(judge: Judge, questions: Sequence[str], model_answers: Sequence[str],
             baseline_answers: Sequence[str], *, judge_prompts: dict | None = None,
             swap: bool = True) -> dict[str, Any]:
    """Pairwise win rate of model vs baseline (pair-v2); with ``swap`` each pair is judged in both
    orders (position bias) and the verdicts are averaged (win=1, tie=0.5, loss=0; errors dropped).
    ``per_prompt``: each question's own score (None when all its judgments were errors)."""
    jp = _prompts(judge_prompts)["pair-v2"]
    reqs, ours, groups = [], [], []
    for i, (q, a, b) in enumerate(zip(questions, model_answers, baseline_answers, strict=True)):
        for x, y, o in ([(a, b, "A"), (b, a, "B")] if swap else [(a, b, "A")]):
            reqs.append(_request(jp, question=q, answer_a=x, answer_b=y))
            ours.append(o)
            groups.append(i)
    out = _pair_summary(judge, reqs, ours, groups)
    out.pop("verdicts")
    # per prompt: the mean score over its judged orders (None: every judgment was an error),
    # the items of a bootstrap CI of the win rate
    by = out.pop("by_group")
    out["per_prompt"] = [by.get(i) for i in range(len(questions))]
    return out


# ---- MT-Bench two-turn ----------------------------------------------------------------------
def mtbench_answers(generate: Callable[[list[dict[str, str]]], str], questions: Sequence[dict],
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Two-turn MT-Bench answers. ``generate(messages) -> str`` is the model's chat function; the
    second turn sees the first question and the model's own first answer."""
    return mtbench_answers_batch(lambda convs: [generate(c) for c in convs], questions, limit)


def mtbench_answers_batch(generate_many: Callable[[list[list[dict[str, str]]]], list[str]],
                          questions: Sequence[dict], limit: int | None = None
                          ) -> list[dict[str, Any]]:
    """Like :func:`mtbench_answers`, turn by turn over all questions at once (batched generation):
    ``generate_many(conversations) -> answers``."""
    qs = list(questions)[: limit if limit is not None else None]
    convs: list[list[dict[str, str]]] = [[] for _ in qs]
    answers: list[list[str]] = [[] for _ in qs]
    for t in range(max((len(q["turns"]) for q in qs), default=0)):
        idx = [i for i, q in enumerate(qs) if len(q["turns"]) > t]
        for i in idx:
            convs[i].append({"role": "user", "content": qs[i]["turns"][t]})
        outs = generate_many([list(convs[i]) for i in idx])
        if len(outs) != len(idx):
            raise ValueError(f"generate_many returned {len(outs)} answers for {len(idx)} prompts")
        for i, a in zip(idx, outs, strict=True):
            convs[i].append({"role": "assistant", "content": a})
            answers[i].append(a)
    return [{"question_id": q.get("question_id"), "category": q.get("category"),
             "turns": list(q["turns"]), "answers": answers[i],
             **({"reference": list(q["reference"])} if q.get("reference") else {})}
            for i, q in enumerate(qs)]


def _references(answers: Sequence[dict[str, Any]], references: dict | None) -> dict:
    """question_id -> reference turns: explicit ``references``, else each row's ``reference``,
    else the GPT-4 reference answers shipped with MT-Bench (only loaded when needed)."""
    refs = dict(references or {})
    need = [a for a in answers if a.get("category") in NEED_REF_CATEGORIES
            and a.get("question_id") not in refs]
    for a in need:
        if a.get("reference"):
            refs[a["question_id"]] = list(a["reference"])
    if any(a.get("question_id") not in refs for a in need):
        try:
            from workbench.data.mtbench import load_reference_answers
            for k, v in load_reference_answers().items():
                refs.setdefault(k, v)
        except (FileNotFoundError, OSError, ValueError):
            pass
    return refs


def _turn_kwargs(a: dict[str, Any], turn: int, ref: list[str] | None, side: str = "") -> dict:
    """Template fields for one answer at ``turn`` (1 or 2); ``side`` "_a"/"_b" for pairwise."""
    kw: dict[str, Any] = {}
    if turn == 1:
        kw["question"] = a["turns"][0]
        kw[f"answer{side}"] = a["answers"][0]
    else:
        kw.update(question_1=a["turns"][0], question_2=a["turns"][1])
        kw[f"answer{side}_1"], kw[f"answer{side}_2"] = a["answers"][0], a["answers"][1]
    if ref:
        kw["ref_answer_1"] = ref[0]
        kw["ref_answer_2"] = ref[1] if len(ref) > 1 else ref[0]
    return kw


def judge_prompt_name(kind: str, category: str | None, turn: int, has_reference: bool) -> str:
    """FastChat's choice: ``single-v1``/``pair-v2``, ``-math-v1`` for reference categories with a
    reference, ``-multi-turn`` suffix for turn 2."""
    if kind not in ("single", "pair"):
        raise ValueError(f"judge prompt kind must be single|pair, got {kind!r}")
    math_ = has_reference and category in NEED_REF_CATEGORIES
    base = {"single": "single-math-v1" if math_ else "single-v1",
            "pair": "pair-math-v1" if math_ else "pair-v2"}[kind]
    return base + ("-multi-turn" if turn == 2 else "")


def _graded_turns(a: dict[str, Any], turns: Sequence[int]) -> list[int]:
    return [t for t in turns if t <= min(len(a["turns"]), len(a["answers"]))]


def _mean(xs: list[float]) -> float:
    ok = [x for x in xs if not math.isnan(x)]
    return sum(ok) / len(ok) if ok else float("nan")


def mtbench_score(judge: Judge, answers: Sequence[dict[str, Any]], *,
                  judge_prompts: dict | None = None, references: dict | None = None,
                  turns: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """MT-Bench single-answer grading of every available turn (1-10).

    Returns ``score`` (mean over all parsed turn ratings, MT-Bench's "average"), ``turn1``,
    ``turn2``, ``n`` (turns graded), ``n_unparsed`` (no rating found: excluded, never imputed),
    ``n_forced`` / ``n_loose`` (ratings obtained by the fallbacks), ``n_no_reference`` (a reference
    category graded without a reference), per-rating records, ``judge`` and ``judge_note``."""
    jp = _prompts(judge_prompts)
    refs = _references(answers, references)
    reqs, meta = [], []
    n_noref = 0
    for a in answers:
        ref = refs.get(a.get("question_id")) if a.get("category") in NEED_REF_CATEGORIES else None
        for t in _graded_turns(a, turns):
            if a.get("category") in NEED_REF_CATEGORIES and not ref:
                n_noref += 1
            name = judge_prompt_name("single", a.get("category"), t, bool(ref))
            reqs.append(_request(_get_prompt(jp, name), **_turn_kwargs(a, t, ref)))
            meta.append({"question_id": a.get("question_id"), "category": a.get("category"),
                         "turn": t, "prompt": name})
    res = rate_all(judge, reqs)
    ratings = [{**m, "rating": r["rating"], "method": r["method"]} for m, r in zip(meta, res,
                                                                                     strict=True)]
    by_turn = {t: _mean([r["rating"] for r in ratings if r["turn"] == t]) for t in (1, 2)}
    return {"score": _mean([r["rating"] for r in ratings]), "turn1": by_turn[1],
            "turn2": by_turn[2], "n": len(ratings),
            "n_unparsed": sum(not r["method"] for r in ratings),
            "n_forced": sum(r["method"] == "forced" for r in ratings),
            "n_loose": sum(r["method"] == "loose" for r in ratings),
            "n_no_reference": n_noref, "ratings": ratings,
            "mode": "expected" if _expected(judge) else "generate",
            **({"mean_mass": _mean([r["mass"] for r in res])} if _expected(judge) else {}),
            "raw": [r["raw"] for r in res], "judge": judge.name, "judge_note": _note(judge)}


def mtbench_pairwise(judge: Judge, answers: Sequence[dict[str, Any]],
                     baseline: Sequence[dict[str, Any]], *, judge_prompts: dict | None = None,
                     references: dict | None = None, turns: Sequence[int] = (1, 2),
                     swap: bool = True) -> dict[str, Any]:
    """MT-Bench pairwise (pair-v2 / pair-math-v1 and their multi-turn variants) of ``answers``
    (model) against ``baseline`` (same questions, same order): win rate overall and per turn
    (``by_group`` keyed 1/2), both orders when ``swap``."""
    if len(answers) != len(baseline):
        raise ValueError(f"mtbench_pairwise: {len(answers)} answers vs {len(baseline)} baseline")
    jp = _prompts(judge_prompts)
    refs = _references(answers, references)
    reqs, ours, groups = [], [], []
    for a, b in zip(answers, baseline, strict=True):
        if a.get("question_id") != b.get("question_id"):
            raise ValueError(f"mtbench_pairwise: question {a.get('question_id')} vs "
                             f"{b.get('question_id')} (same order needed)")
        ref = refs.get(a.get("question_id")) if a.get("category") in NEED_REF_CATEGORIES else None
        for t in _graded_turns(a, turns):
            if t not in _graded_turns(b, turns):
                continue
            name = judge_prompt_name("pair", a.get("category"), t, bool(ref))
            for x, y, o in ([(a, b, "A"), (b, a, "B")] if swap else [(a, b, "A")]):
                kw = {**_turn_kwargs(x, t, ref, "_a"), **_turn_kwargs(y, t, ref, "_b")}
                reqs.append(_request(_get_prompt(jp, name), **kw))
                ours.append(o)
                groups.append(t)
    out = _pair_summary(judge, reqs, ours, groups)
    out["turn1"] = out["by_group"].get(1, float("nan"))
    out["turn2"] = out["by_group"].get(2, float("nan"))
    return out
