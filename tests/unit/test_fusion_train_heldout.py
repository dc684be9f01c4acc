"""Held-out response CE (workbench.eval.heldout): assistant tokens only, padding-invariant."""

import math

import pytest
import torch
from torch.nn import functional as F

from workbench.eval.heldout import response_ce, token_nll


class _Bigram(torch.nn.Module):
    """logits[t] depend on input_ids[t] only: hand-checkable."""

    def __init__(self, v=5):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(v, v, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_token_nll_masks_non_assistant_next_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    labels = torch.tensor([[-100, 1, -100]])
    nll, mask = token_nll(logits, labels)
    assert mask.tolist() == [[True, False]]
    assert nll[0, 0].item() == pytest.approx(math.log(2.0))
    assert nll[0, 1].item() == 0.0


def test_response_ce_matches_hand_computation_and_batching():
    model = _Bigram()
    exs = [{"input_ids": [0, 1, 2, 3], "labels": [-100, -100, 2, 3]},
           {"input_ids": [4, 2], "labels": [-100, 2]},
           {"input_ids": [1, 1, 1], "labels": [-100, 1, -100]}]
    lp = F.log_softmax(model.table.detach(), -1)
    by_hand = [[-lp[1, 2], -lp[2, 3]], [-lp[4, 2]], [-lp[1, 1]]]
    flat = [float(x) for d in by_hand for x in d]
    for bs in (1, 3):
        res = response_ce(model, exs, batch_size=bs, chars=10)
        assert res["n_tokens"] == 4 and res["n_dialogues"] == 3
        assert res["ce"] == pytest.approx(sum(flat) / 4, abs=1e-6)
        assert res["ppl"] == pytest.approx(math.exp(res["ce"]))
        means = [sum(float(x) for x in d) / len(d) for d in by_hand]
        assert res["ce_dialogue_mean"] == pytest.approx(sum(means) / 3, abs=1e-6)
        assert res["nll_per_char"] == pytest.approx(sum(flat) / 10, abs=1e-6)
        assert [d["n_tokens"] for d in res["per_dialogue"]] == [2, 1, 1]  # input order


def test_response_ce_bad_input():
    with pytest.raises(ValueError, match="no held-out"):
        response_ce(_Bigram(), [])
    with pytest.raises(ValueError, match="no assistant tokens"):
        response_ce(_Bigram(), [{"input_ids": [0, 1], "labels": [-100, -100]}])
    with pytest.raises(ValueError, match="differ in length"):
        response_ce(_Bigram(), [{"input_ids": [0, 1], "labels": [-100]}])
