import math

import pytest

from workbench.eval.chat import (
    HFJudge,
    OpenAIJudge,
    make_judge,
    mtbench_answers,
    mtbench_score,
    parse_rating,
    parse_verdict,
    win_rate,
)

JP = {"single-v1": {"system_prompt": "s", "prompt_template": "Q:{question} A:{answer}"},
      "pair-v2": {"system_prompt": "s",
                  "prompt_template": "Q:{question} A:{answer_a} B:{answer_b}"}}


class Fake:
    name = "fake"

    def __init__(self, fn):
        self.fn = fn

    def complete(self, system, user):
        return self.fn(user)


def test_parse_rating():
    assert parse_rating("Rating: [[7]]") == 7.0
    assert parse_rating("[[8.5]]") == 8.5
    assert parse_rating("Rating: [6]") == 6.0
    for bad in ["", None, "no rating", "[[11]]", "[[0]]"]:
        assert math.isnan(parse_rating(bad))


def test_parse_verdict():
    assert parse_verdict("... [[A]]") == "A"
    assert parse_verdict("[[B]]") == "B"
    assert parse_verdict("[[C]]") == "tie"
    assert parse_verdict("[[A]] or [[B]]") == "error"
    assert parse_verdict("") == "error"


def test_win_rate_swaps_positions():
    # judge prefers the answer containing "good", regardless of position
    def fn(u):
        a = u.split("A:")[1].split(" B:")[0]
        return "[[A]]" if "good" in a else "[[B]]"
    r = win_rate(Fake(fn), ["q1", "q2"], ["good", "bad"], ["bad", "good"], judge_prompts=JP)
    assert r["win_rate"] == 0.5 and r["win"] == 2 and r["loss"] == 2 and r["n_judgments"] == 4
    assert r["per_prompt"] == [1.0, 0.0]  # per question, both orders averaged: the CI's items
    # a judge that always says A: position bias cancels to 0.5
    r = win_rate(Fake(lambda u: "[[A]]"), ["q"], ["x"], ["y"], judge_prompts=JP)
    assert r["win_rate"] == 0.5


def test_mtbench_answers_and_score():
    qs = [{"question_id": 1, "category": "x", "turns": ["t1", "t2"]},
          {"question_id": 2, "category": "y", "turns": ["u1", "u2"]}]
    ans = mtbench_answers(lambda m: f"ans{len(m)}", qs, limit=1)
    assert len(ans) == 1 and ans[0]["answers"] == ["ans1", "ans3"]
    s = mtbench_score(Fake(lambda u: "[[9]]"), ans, judge_prompts=JP, turns=(1,))
    assert s["score"] == 9.0 and s["n_unparsed"] == 0 and s["n"] == 1


def test_judge_construction(monkeypatch):
    monkeypatch.delenv("WORKBENCH_JUDGE_BASE_URL", raising=False)
    assert isinstance(make_judge(), HFJudge)
    with pytest.raises(ValueError):
        OpenAIJudge()
    monkeypatch.setenv("WORKBENCH_JUDGE_BASE_URL", "http://localhost:9/v1/")
    monkeypatch.setenv("WORKBENCH_JUDGE_MODEL", "m")
    j = make_judge()
    assert isinstance(j, OpenAIJudge) and j.name == "m" and j.base_url.endswith("/v1")
    # local-only options are dropped for an endpoint, applied to a local judge
    assert isinstance(make_judge(mode="expected", max_new_tokens=7, batch_size=3), OpenAIJudge)
    h = make_judge("hf", "qwen2.5-coder-0.5b-instruct", "expected", max_new_tokens=7, batch_size=3)
    assert (h.max_new_tokens, h.batch_size, h.mode) == (7, 3, "expected")
    from workbench.eval.chat import judge_tag
    assert judge_tag(h) == "qwen2_5_coder_0_5b_instruct-expected" and judge_tag(j) == "m"


# ---- robust parsing, forced ratings, two-turn MT-Bench ------------------------------------
from workbench.eval.chat import (  # noqa: E402
    judge_prompt_name,
    mtbench_answers_batch,
    mtbench_pairwise,
    parse_rating_detail,
    rate_all,
    verdict_all,
)

NAMES = ["single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn",
         "pair-v2", "pair-math-v1", "pair-v2-multi-turn", "pair-math-v1-multi-turn"]
# each template names itself and echoes every field it gets, so a fake judge can see them
JP2 = {n: {"system_prompt": "s", "prompt_template": f"NAME={n} " + " ".join(
    f"{k}=<{{{k}}}>" for k in {
        "single-v1": ["question", "answer"],
        "single-math-v1": ["question", "answer", "ref_answer_1"],
        "single-v1-multi-turn": ["question_1", "answer_1", "question_2", "answer_2"],
        "single-math-v1-multi-turn": ["question_1", "answer_1", "question_2", "answer_2",
                                      "ref_answer_1", "ref_answer_2"],
        "pair-v2": ["question", "answer_a", "answer_b"],
        "pair-math-v1": ["question", "answer_a", "answer_b", "ref_answer_1"],
        "pair-v2-multi-turn": ["question_1", "question_2", "answer_a_1", "answer_a_2",
                               "answer_b_1", "answer_b_2"],
        "pair-math-v1-multi-turn": ["question_1", "question_2", "answer_a_1", "answer_a_2",
                                    "answer_b_1", "answer_b_2", "ref_answer_1", "ref_answer_2"],
    }[n])} for n in NAMES}


def test_parse_rating_detail_methods():
    assert parse_rating_detail("ok. Rating: [[7]]") == (7.0, "strict")
    assert parse_rating_detail("[5]\n\nExplanation: fine") == (5.0, "bracket")
    assert parse_rating_detail("Overall my rating: 6 because") == (6.0, "loose")
    # what qwen2.5-coder-0.5b-instruct actually wrote for single-v1 (neither MT-Bench pattern)
    assert parse_rating_detail("[Rating: 8]\n\nThis response is engaging") == (8.0, "loose")
    assert parse_rating_detail("I would give it 8/10.") == (8.0, "loose")
    assert parse_rating_detail("score of 3 at first, final score: 9") == (9.0, "loose")
    v, how = parse_rating_detail("The response is helpful and detailed")
    assert math.isnan(v) and how == ""
    v, how = parse_rating_detail("[[12]]")  # out of range is not rescued by other patterns
    assert math.isnan(v) and how == ""


class ForceFake:
    """Batched fake judge with a continuation hook, like HFJudge."""
    name = "force-fake"
    force_format = True

    def __init__(self, answer, cont):
        self.answer, self.cont, self.calls = answer, cont, []

    def complete_many(self, reqs):
        self.calls.append(len(reqs))
        return [self.answer(u) for _, u in reqs]

    def complete(self, s, u):
        return self.complete_many([(s, u)])[0]

    def continue_many(self, reqs, max_new_tokens=4):
        return [self.cont(u, prefix) for _, u, prefix in reqs]


def test_rate_all_forced_and_unparsed_counted():
    j = ForceFake(lambda u: "The answer is good but the explanation was cut",
                  lambda u, p: "6]]" if "good" in u else "excellent")
    out = rate_all(j, [("s", "good one"), ("s", "bad one")])
    assert out[0]["rating"] == 6.0 and out[0]["method"] == "forced"
    assert out[0]["raw"].endswith("Rating: [[6]]")
    assert math.isnan(out[1]["rating"]) and out[1]["method"] == ""
    assert j.calls == [2]  # one batched call
    # no continuation for a judge that is not marked force_format
    j.force_format = False
    assert rate_all(j, [("s", "good")])[0]["method"] == ""


def test_verdict_all_forced():
    j = ForceFake(lambda u: "Both are similar." if "x" in u else "[[B]]",
                  lambda u, p: "C]]")
    out = verdict_all(j, [("s", "x"), ("s", "y")])
    assert [o["verdict"] for o in out] == ["tie", "B"]
    assert [o["method"] for o in out] == ["forced", "strict"]


def test_judge_prompt_name():
    assert judge_prompt_name("single", "writing", 1, False) == "single-v1"
    assert judge_prompt_name("single", "math", 1, True) == "single-math-v1"
    assert judge_prompt_name("single", "math", 2, True) == "single-math-v1-multi-turn"
    assert judge_prompt_name("single", "math", 2, False) == "single-v1-multi-turn"
    assert judge_prompt_name("pair", "coding", 2, True) == "pair-math-v1-multi-turn"
    assert judge_prompt_name("pair", "stem", 1, True) == "pair-v2"
    with pytest.raises(ValueError, match="single|pair"):
        judge_prompt_name("triple", "x", 1, False)


def test_mtbench_answers_batch_second_turn_sees_first_answer():
    seen = []

    def gen_many(convs):
        seen.append([len(c) for c in convs])
        return [f"A{len(c)}:{c[-1]['content']}" for c in convs]
    qs = [{"question_id": 1, "category": "writing", "turns": ["w1", "w2"]},
          {"question_id": 2, "category": "math", "turns": ["m1", "m2"], "reference": ["4", "8"]},
          {"question_id": 3, "category": "stem", "turns": ["s1"]}]
    ans = mtbench_answers_batch(gen_many, qs)
    assert seen == [[1, 1, 1], [3, 3]]  # turn 1 for all, then turn 2 with the history
    assert ans[0]["answers"] == ["A1:w1", "A3:w2"]
    assert ans[2]["answers"] == ["A1:s1"] and "reference" not in ans[0]
    assert ans[1]["reference"] == ["4", "8"]
    with pytest.raises(ValueError, match="returned"):
        mtbench_answers_batch(lambda c: [], qs)


def test_mtbench_score_two_turns_prompts_and_references():
    def rate(u):
        name = u.split()[0][5:]
        if name.startswith("single-math"):
            assert "ref_answer_1=<4>" in u
        if name.endswith("multi-turn"):
            assert "answer_1=<a1>" in u and "question_2=<q2>" in u
            return "[[4]]"
        return "Rating: [[8]]"
    ans = [{"question_id": 1, "category": "writing", "turns": ["q1", "q2"], "answers": ["a1", "a2"]},
           {"question_id": 2, "category": "math", "turns": ["q1", "q2"], "answers": ["a1", "a2"],
            "reference": ["4", "8"]},
           {"question_id": 99999, "category": "coding", "turns": ["q1", "q2"],
            "answers": ["a1", "a2"]}]  # a reference category with no reference anywhere
    s = mtbench_score(ForceFake(rate, lambda u, p: ""), ans, judge_prompts=JP2)
    assert s["turn1"] == 8.0 and s["turn2"] == 4.0 and s["score"] == 6.0
    assert s["n"] == 6 and s["n_unparsed"] == 0 and s["n_no_reference"] == 2
    prompts = [r["prompt"] for r in s["ratings"]]
    assert prompts == ["single-v1", "single-v1-multi-turn", "single-math-v1",
                       "single-math-v1-multi-turn", "single-v1", "single-v1-multi-turn"]
    one = mtbench_score(ForceFake(rate, lambda u, p: ""), ans[:1], judge_prompts=JP2, turns=(1,))
    assert one["n"] == 1 and one["score"] == 8.0 and math.isnan(one["turn2"])


def test_mtbench_score_unparsed_never_imputed():
    ans = [{"question_id": 1, "category": "writing", "turns": ["q1", "q2"], "answers": ["a", "b"]}]
    s = mtbench_score(ForceFake(lambda u: "no number here", lambda u, p: "?"), ans,
                      judge_prompts=JP2)
    assert s["n_unparsed"] == 2 and math.isnan(s["score"]) and math.isnan(s["turn1"])


def test_mtbench_pairwise_per_turn_and_swap():
    def verdict(u):  # prefers the side whose turn-1 or turn-2 answer contains "good"
        if "answer_a_1" in u:
            a = u.split("answer_a_2=<")[1].split(">")[0]
            return "[[A]]" if "good" in a else "[[B]]"
        a = u.split("answer_a=<")[1].split(">")[0]
        return "[[A]]" if "good" in a else "[[B]]"
    model = [{"question_id": 1, "category": "writing", "turns": ["q1", "q2"],
              "answers": ["good1", "bad2"]}]
    base = [{"question_id": 1, "category": "writing", "turns": ["q1", "q2"],
             "answers": ["bad1", "good2"]}]
    r = mtbench_pairwise(ForceFake(verdict, lambda u, p: ""), model, base, judge_prompts=JP2)
    assert r["turn1"] == 1.0 and r["turn2"] == 0.0 and r["win_rate"] == 0.5
    assert r["n_judgments"] == 4 and r["win"] == 2 and r["loss"] == 2
    with pytest.raises(ValueError, match="same order"):
        mtbench_pairwise(ForceFake(verdict, None), model, [{**base[0], "question_id": 2}],
                         judge_prompts=JP2)


def test_hf_judge_batched_and_forced_on_tiny_model():
    from workbench.common import load_causal_lm
    m, t = load_causal_lm("tiny:llama")
    j = HFJudge("tiny", max_new_tokens=3, model=m, tokenizer=t, batch_size=2)
    outs = j.complete_many([("sys", "rate this"), ("", "and this longer one please"), ("s", "x")])
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert len(j.continue_many([("s", "u", "prefix [[")], max_new_tokens=2)) == 1
    res = rate_all(j, [("s", "rate this")])
    assert res[0]["method"] in ("", "strict", "bracket", "loose", "forced")
    assert math.isnan(res[0]["rating"]) == (res[0]["method"] == "")


# ---- the `expected` judge mode -------------------------------------------------------------
def _tiny_judge(mode="expected", batch_size=2):
    from workbench.common import load_causal_lm
    m, t = load_causal_lm("tiny:llama")
    return HFJudge("tiny", model=m, tokenizer=t, batch_size=batch_size, mode=mode), m, t


def _full_logprobs(m, t, text):
    import torch
    ids = t(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return m(input_ids=ids).logits[0, -1].float().log_softmax(-1)


def test_expected_logprobs_match_unpadded_forwards_and_kv_continuation():
    import torch
    j, m, t = _tiny_judge(batch_size=3)
    texts = ["short", "a much longer text that needs left padding in the batch", "mid size one"]
    first, then = j.next_token_logprobs(texts, then="1")
    for i, x in enumerate(texts):
        assert torch.allclose(first[i], _full_logprobs(m, t, x), atol=1e-4)
        assert torch.allclose(then[i], _full_logprobs(m, t, x + "1"), atol=1e-4)


def test_expected_rating_is_the_probability_weighted_mean_by_hand():
    j, m, t = _tiny_judge()
    req = ("sys", "rate this answer")
    d = j.rating_distributions([req])[0]
    text = j._text(*req, "Rating: [[")
    lp, lp1 = _full_logprobs(m, t, text), _full_logprobs(m, t, text + "1")
    tid = {k: t.encode(str(k), add_special_tokens=False)[0] for k in range(10)}
    p = {r: float(lp[tid[r]].exp()) for r in range(2, 10)}
    p1, p0 = float(lp[tid[1]].exp()), float(lp1[tid[0]].exp())
    p[1], p[10] = p1 * (1 - p0), p1 * p0
    z = sum(p.values())
    assert d["mass"] == pytest.approx(z, rel=1e-4)
    assert d["rating"] == pytest.approx(sum(r * x / z for r, x in p.items()), rel=1e-4)
    assert sum(d["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    out = rate_all(j, [req])[0]
    assert out["method"] == "expected" and out["rating"] == pytest.approx(d["rating"])
    assert 1.0 <= out["rating"] <= 10.0


def test_expected_verdicts_score_pairs_by_probability():
    j, m, t = _tiny_judge()
    reqs = [("s", "first pair"), ("s", "second pair")]
    res = verdict_all(j, reqs)
    for r in res:
        assert r["method"] == "expected" and set(r["probs"]) == {"A", "B", "C"}
        assert sum(r["probs"].values()) == pytest.approx(1.0)
        top = max("ABC", key=r["probs"].get)
        assert r["verdict"] == ("tie" if top == "C" else top)
    from workbench.eval.chat import _pair_summary
    s = _pair_summary(j, reqs, ["A", "B"])
    want = [res[0]["probs"]["A"] + res[0]["probs"]["C"] / 2,
            res[1]["probs"]["B"] + res[1]["probs"]["C"] / 2]
    assert s["win_rate"] == pytest.approx(sum(want) / 2)
    assert s["mode"] == "expected" and 0 < s["mean_mass"] <= 1


def test_judge_mode_is_checked():
    with pytest.raises(ValueError, match="judge mode"):
        HFJudge("tiny", mode="vibes")
    with pytest.raises(ValueError, match="judge mode"):
        make_judge("hf", mode="vibes")


def test_config_judge_mode_checked():
    from workbench.fusion.config import FuseChatConfig
    from workbench.seft.config import SEFTConfig

    assert SEFTConfig.from_preset("smoke").judge_mode == "expected"
    for cls in (SEFTConfig, FuseChatConfig):
        with pytest.raises(ValueError, match="judge_mode must be one of expected, generate"):
            cls.from_preset("smoke", judge_mode="vibes")
