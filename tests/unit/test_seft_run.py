from workbench.seft.pref_sources import to_pairs
from workbench.seft.run import mtbench_subset


def test_mtbench_subset_round_robin_over_categories():
    qs = [{"question_id": i, "category": c} for i, c in
          enumerate(["w", "w", "w", "m", "m", "c"])]
    assert [q["question_id"] for q in mtbench_subset(qs, 3)] == [0, 3, 5]
    assert [q["question_id"] for q in mtbench_subset(qs, 5)] == [0, 3, 5, 1, 4]
    assert len(mtbench_subset(qs, 100)) == 6 and mtbench_subset(qs, 0) == []


def test_normalize_pref_accepts_both_key_styles():
    (r,) = to_pairs([{"prompt": "p", "chosen": "c", "rejected": "r"}])
    assert (r["chosen_response"], r["rejected_response"]) == ("c", "r")
    (r,) = to_pairs([{"prompt": "p", "chosen_response": "c2", "chosen": "x", "rejected": None}])
    assert r["chosen_response"] == "c2" and r.get("rejected_response") is None


def test_judge_warnings_unparsed_and_forced():
    from workbench.seft.run import judge_warnings
    ok = [{"n_ratings": 4, "n_unparsed": 0, "n_forced_ratings": 1}]
    assert judge_warnings(ok) == []
    w = judge_warnings([{"n_ratings": 4, "n_unparsed": 1, "n_forced_ratings": 3}])
    assert len(w) == 2 and "1 of 4" in w[0] and "3 of 4" in w[1] and "forced" in w[1]


def test_same_answers_share():
    from workbench.seft.run import _same_share
    sft = {"eval": ["a", "b"], "mtbench": [{"answers": ["c", "d"]}]}
    other = {"eval": ["a", "x"], "mtbench": [{"answers": ["c", "y"]}]}
    assert _same_share(other, sft) == 0.5 and _same_share(sft, sft) == 1.0
    assert _same_share(other, None) is None
