import pytest

from workbench.spans.metric import span_f1
from workbench.spans.select import (
    count_empty,
    decode_probs,
    ensemble_posts,
    fold_f1,
    gate,
    kfold,
    post_score,
    select_ensemble,
    select_member,
)


def test_kfold_partitions_and_is_seeded():
    folds = kfold(10, 3, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(10))
    assert sorted(len(f) for f in folds) == [3, 3, 4]
    assert kfold(10, 3, seed=1) == folds and kfold(10, 3, seed=2) != folds
    with pytest.raises(ValueError, match="k >= 2"):
        kfold(10, 1)
    with pytest.raises(ValueError, match="cannot be split"):
        kfold(2, 3)


def test_decode_probs_and_post_score():
    probs = [(0, 3, 0.9), (4, 6, 0.45), (7, 9, 0.6)]
    assert decode_probs(probs, 0.5) == [0, 1, 2, 7, 8]
    assert decode_probs(probs, 0.4) == [0, 1, 2, 4, 5, 7, 8]
    assert decode_probs(probs, 0.95) == []
    assert post_score(probs) == 0.9 and post_score([]) == 0.0


def test_gate_and_ensemble_posts():
    assert gate([1, 2], 0.7, 0.8) == [] and gate([1, 2], 0.8, 0.8) == [1, 2] and gate([1], 0.1, 0.0) == [1]
    preds = [[[1, 2, 3], [5]], [[2, 3], [5, 6]], [[3], []]]  # 3 members x 2 posts
    scores = [[0.9, 0.6], [0.8, 0.6], [0.7, 0.3]]
    assert ensemble_posts(preds, scores) == [[2, 3], [5]]  # strict majority (2 of 3)
    assert ensemble_posts(preds, scores, min_votes=1) == [[1, 2, 3], [5, 6]]
    assert ensemble_posts(preds, scores, min_votes=3) == [[3], []]
    # gate on the mean post score: post 0 mean 0.8 passes 0.6, post 1 mean 0.5 does not
    assert ensemble_posts(preds, scores, tau_post=0.6) == [[2, 3], []]
    with pytest.raises(ValueError, match="number of posts"):
        ensemble_posts([[[1]], [[1], [2]]], [[0.5], [0.5, 0.5]])


def _batch():
    """A hand-built batch of 6 posts: 3 with a toxic word, 3 span-free on which the member still fires
    weakly (post score 0.55-0.6) while its true detections score >= 0.8."""
    golds = [[0, 1, 2], [4, 5], [0, 1], [], [], []]
    probs = [[(0, 3, 0.9), (4, 6, 0.2)], [(0, 3, 0.1), (4, 6, 0.8)], [(0, 2, 0.85)],
             [(0, 3, 0.6)], [(0, 4, 0.55), (5, 7, 0.3)], [(0, 2, 0.1)]]
    spans = [decode_probs(p, 0.5) for p in probs]
    return golds, spans, probs


def test_post_level_gate_on_hand_built_batch():
    golds, spans, probs = _batch()
    folds = [[0, 3], [1, 4], [2, 5]]
    ungated = select_member([(spans, probs)], golds, folds, crf=False, tau_tokens=(0.5,), tau_posts=(0.0,))
    assert count_empty(ungated["preds"], golds) == {"span_free": 3, "empty_pred": 1, "empty_pred_on_toxic": 0}
    assert span_f1(ungated["preds"], golds) == pytest.approx(4 / 6)
    best = select_member([(spans, probs)], golds, folds, crf=False, tau_tokens=(0.5,))
    # the gate removes the two weak false alarms and keeps every true detection (0.65..0.8 tie: smallest)
    assert best["tau_post"] == 0.65
    assert count_empty(best["preds"], golds)["empty_pred"] == 3
    assert best["cv_f1"] == pytest.approx(1.0) and best["cv_sd"] == pytest.approx(0.0)
    assert fold_f1(best["preds"], golds, folds) == [1.0, 1.0, 1.0]
    assert best["ungated"] == ungated["preds"]  # kept for the before/after count


def test_select_member_picks_epoch_and_threshold():
    golds = [[0, 1, 2, 3], [0, 1]]
    early = ([[0, 1], []], [[(0, 2, 0.6), (2, 4, 0.4)], [(0, 2, 0.3)]])
    late = ([[0, 1, 2, 3], [0, 1]], [[(0, 2, 0.9), (2, 4, 0.8)], [(0, 2, 0.7)]])
    folds = [[0], [1]]
    assert select_member([early, late], golds, folds, crf=False, tau_tokens=(0.5,), tau_posts=(0.0,))["epoch"] == 2
    res = select_member([early], golds, folds, crf=False, tau_posts=(0.0,))
    assert res["tau_token"] == 0.3 and res["cv_f1"] == pytest.approx(1.0)  # low threshold recovers recall
    crf = select_member([early], golds, folds, crf=True, tau_posts=(0.0,))
    assert crf["tau_token"] is None and crf["preds"] == [[0, 1], []]  # CRF keeps its own decoding


def test_select_ensemble_vote_size():
    golds = [[1, 2], [5]]
    members = [[[1, 2], [5]], [[1, 2, 9], [5, 7]], [[8], [5, 8]]]
    scores = [[0.9, 0.9]] * 3
    res = select_ensemble(members, scores, golds, [[0], [1]], tau_posts=(0.0,))
    assert res["min_votes"] == 2 and res["cv_f1"] == pytest.approx(1.0)
