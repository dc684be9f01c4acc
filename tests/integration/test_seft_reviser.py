"""The reviser's decision (constrained and free), its input clipping and the held-out
discrimination metric, on the tiny random Llama (real tokenizer: SmolLM2's)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.common import load_causal_lm, seed_everything  # noqa: E402
from workbench.seft.reviser_data import (  # noqa: E402
    KEEP,
    REVISE,
    build_reviser_examples,
    usable_revision,
)
from workbench.seft.training import (  # noqa: E402
    _chat_prompt,
    clip_reviser_input,
    continuation_logprobs,
    decision_margins,
    revise,
    reviser_discrimination,
    reviser_messages,
    train_sft,
)

PAIRS = [{"prompt": f"Question {i}?", "chosen_response": f"A helpful answer {i}.",
          "rejected_response": f"no {i}"} for i in range(4)]


@pytest.fixture(scope="module")
def tiny():
    seed_everything(0)
    return load_causal_lm("tiny:llama")


def test_continuation_logprobs_match_a_plain_forward(tiny):
    m, tok = tiny
    texts = ["Hi there", "A much longer user message, padded in the batch", "Third"]
    conts = ["KEEP\n", "REVISE\n", "R"]
    got = continuation_logprobs(m, tok, texts, conts, batch_size=2)  # batches mix lengths
    for t, row in zip(texts, got, strict=True):
        p = tok(_chat_prompt(tok, t), add_special_tokens=False)["input_ids"]
        for c, lp in zip(conts, row, strict=True):
            full = tok(_chat_prompt(tok, t) + c, add_special_tokens=False)["input_ids"]
            assert full[:len(p)] == p
            with torch.no_grad():
                logits = m(input_ids=torch.tensor([full])).logits[0].float()
            ref = torch.log_softmax(logits[:-1], -1)[torch.arange(len(full) - 1),
                                                      torch.tensor(full[1:])][len(p) - 1:].sum()
            assert lp == pytest.approx(float(ref), abs=1e-4)


def test_clip_keeps_short_inputs_and_fits_long_ones(tiny):
    _, tok = tiny
    assert clip_reviser_input(tok, "Q?", "A.", 200) == ("Q?", "A.")
    assert clip_reviser_input(tok, "Q?", "A." * 500, None) == ("Q?", "A." * 500)
    p, r = clip_reviser_input(tok, "why " * 300, "because " * 300, 200)
    from workbench.seft.reviser_data import format_reviser_prompt
    n = len(tok(_chat_prompt(tok, format_reviser_prompt(p, r)), add_special_tokens=False)
            ["input_ids"])
    assert 180 <= n <= 200 and len(p) > 0 and len(r) > 0
    with pytest.raises(ValueError, match="reviser input limit 20 tokens"):
        clip_reviser_input(tok, "Q?", "A.", 20)
    # training examples are clipped the same way, the target (decision first) untouched
    ex, _ = build_reviser_examples([{"prompt": "why " * 300, "chosen_response": "ok",
                                     "rejected_response": "because " * 300}])
    msgs = reviser_messages(tok, ex, 200)
    assert [m[1]["content"] for m in msgs] == ["REVISE\nok", "KEEP\nok"]
    assert "because" in msgs[0][0]["content"] and len(msgs[0][0]["content"]) < 1500


def test_constrained_decision_follows_the_margin(tiny):
    m, tok = tiny
    prompts = [p["prompt"] for p in PAIRS]
    resps = [p["rejected_response"] for p in PAIRS]
    margins = decision_margins(m, tok, prompts, resps)
    parsed, raw = revise(m, tok, prompts, resps, max_new_tokens=4, return_raw=True)
    for q, mg, r, o in zip(parsed, margins, resps, raw, strict=True):
        assert q.margin == pytest.approx(mg)
        if mg > 0 and not q.malformed:
            assert q.decision == REVISE and o.startswith("REVISE\n") and q.response
        else:
            assert q.decision == KEEP and q.response == r
        assert q.malformed == (mg > 0 and not usable_revision(o[len("REVISE\n"):]))
    with pytest.raises(ValueError, match="decision must be one of"):
        revise(m, tok, prompts, resps, decision="sampled")


@pytest.mark.slow
def test_a_reviser_trained_to_revise_revises_in_both_modes(tmp_path):
    """Trained (high LR) on REVISE-only examples, the tiny reviser prefers REVISE on unseen pairs
    (constrained) and its free output starts with the decision, which the parser reads."""
    seed_everything(0)
    m, tok = load_causal_lm("tiny:llama")
    rows = [{"prompt": f"Tell me about {w}.", "chosen_response": "Sure.",
             "rejected_response": f"{w} no"} for w in ("cats", "dogs", "rain", "tea")]
    ex, _ = build_reviser_examples(rows, include_keep=False)
    held = [{"prompt": "Tell me about snow.", "chosen_response": "Sure.",
             "rejected_response": "snow no"}]
    before = reviser_discrimination(m, tok, held)
    m, _ = train_sft(m, tok, reviser_messages(tok, ex, 128), tmp_path, lr=3e-3, max_steps=40,
                     max_length=160)
    after = reviser_discrimination(m, tok, held)
    assert after["n_pairs"] == 1 and after["share_revise_rejected"] == 1.0
    assert after["mean_margin_rejected"] > before["mean_margin_rejected"] + 5
    (con,), (craw,) = revise(m, tok, ["Tell me about snow."], ["snow no"], max_new_tokens=6,
                             return_raw=True)
    assert con.margin > 0 and craw.startswith("REVISE\n")
    # a REVISE decision with an empty revision would be malformed, never a silent REVISE
    assert (con.decision, con.malformed) == ((REVISE, False) if usable_revision(craw[7:])
                                             else (KEEP, True))
    (free,), (raw,) = revise(m, tok, ["Tell me about snow."], ["snow no"], max_new_tokens=8,
                             decision="free", return_raw=True)
    assert raw.startswith(REVISE) and free.margin is None
    assert (free.decision, free.malformed) == ((REVISE, False) if usable_revision(raw[6:])
                                               else (KEEP, True))


def test_discrimination_counts(tiny):
    m, tok = tiny
    d = reviser_discrimination(m, tok, PAIRS)
    assert d["n_pairs"] == 4
    rej = decision_margins(m, tok, [p["prompt"] for p in PAIRS],
                           [p["rejected_response"] for p in PAIRS])
    assert d["share_revise_rejected"] == sum(x > 0 for x in rej) / 4
    assert d["mean_margin_rejected"] == pytest.approx(sum(rej) / 4)
    assert 0.0 <= d["decision_accuracy"] <= 1.0 and 0.0 <= d["pairwise_accuracy"] <= 1.0
    assert reviser_discrimination(m, tok, []) == {"n_pairs": 0}
