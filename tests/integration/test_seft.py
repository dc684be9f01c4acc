import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.common import load_causal_lm  # noqa: E402
from workbench.seft.reviser_data import build_reviser_examples  # noqa: E402
from workbench.seft.training import evolution_round, train_preference, train_sft  # noqa: E402

ROWS = [{"prompt": f"Question {i}?", "chosen_response": f"A helpful answer {i}.",
         "rejected_response": f"no {i}"} for i in range(4)]


def _params(m):
    return torch.cat([p.detach().flatten().clone() for p in m.parameters()])


def test_reviser_sft_and_round(tmp_path):
    torch.manual_seed(0)
    rev, tok = load_causal_lm("tiny:llama")
    ex, _ = build_reviser_examples(ROWS)
    rev, loss = train_sft(rev, tok, [e["messages"] for e in ex], tmp_path / "rev", max_steps=1,
                          max_length=128)
    assert loss == loss
    pol, ptok = load_causal_lm("tiny:llama")
    before = _params(pol)
    pol, stats, rows = evolution_round(pol, ptok, rev, tok, [r["prompt"] for r in ROWS],
                                       tmp_path / "r1", max_steps=1, lr=1e-2, max_new_tokens=8,
                                       reviser_max_new_tokens=8, max_length=128)
    assert not torch.equal(before, _params(pol))
    assert len(rows) == 4 and stats["n"] == 4 and "share_revised" in stats


def test_round_empty_pool(tmp_path):
    m, t = load_causal_lm("tiny:llama")
    with pytest.raises(ValueError, match="empty"):
        evolution_round(m, t, m, t, [], tmp_path)


@pytest.mark.parametrize("kind", ["dpo", "orpo"])
def test_baselines_one_step(tmp_path, kind):
    m, t = load_causal_lm("tiny:llama")
    _, loss = train_preference(kind, m, t, ROWS, tmp_path, max_steps=1, max_length=128)
    assert loss == loss
