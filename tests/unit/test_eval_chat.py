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
    # a judge that always says A: position bias cancels to 0.5
    r = win_rate(Fake(lambda u: "[[A]]"), ["q"], ["x"], ["y"], judge_prompts=JP)
    assert r["win_rate"] == 0.5


def test_mtbench_answers_and_score():
    qs = [{"question_id": 1, "category": "x", "turns": ["t1", "t2"]},
          {"question_id": 2, "category": "y", "turns": ["u1", "u2"]}]
    ans = mtbench_answers(lambda m: f"ans{len(m)}", qs, limit=1)
    assert len(ans) == 1 and ans[0]["answers"] == ["ans1", "ans3"]
    s = mtbench_score(Fake(lambda u: "[[9]]"), ans, judge_prompts=JP)
    assert s["score"] == 9.0 and s["n_unparsed"] == 0


def test_judge_construction(monkeypatch):
    monkeypatch.delenv("WORKBENCH_JUDGE_BASE_URL", raising=False)
    assert isinstance(make_judge(), HFJudge)
    with pytest.raises(ValueError):
        OpenAIJudge()
    monkeypatch.setenv("WORKBENCH_JUDGE_BASE_URL", "http://localhost:9/v1/")
    monkeypatch.setenv("WORKBENCH_JUDGE_MODEL", "m")
    j = make_judge()
    assert isinstance(j, OpenAIJudge) and j.name == "m" and j.base_url.endswith("/v1")
