"""FuseChat fusion-training kernels against hand-computed values and the official dense loss."""

import math

import pytest
import torch
from torch.nn import functional as F

from workbench.fusion.formats import PAD_ID, PAD_LOGIT
from workbench.fusion.train import (
    dense_fusion_loss,
    dense_target_bytes,
    dense_targets,
    fusion_objective,
    mince_select,
    next_token_mask,
    sft_loss,
    sparse_fusion_loss,
    sparse_target_bytes,
    topk_distribution,
)


def test_topk_distribution_renormalises_over_support_and_ignores_padding():
    ids = torch.tensor([[3, 1, PAD_ID], [PAD_ID, PAD_ID, PAD_ID]])
    logits = torch.tensor([[math.log(3.0), 0.0, PAD_LOGIT], [PAD_LOGIT, PAD_LOGIT, PAD_LOGIT]])
    safe, probs, valid = topk_distribution(ids, logits)
    assert safe.tolist() == [[3, 1, 0], [0, 0, 0]]
    assert torch.allclose(probs[0], torch.tensor([0.75, 0.25, 0.0]))
    assert probs[1].tolist() == [0.0, 0.0, 0.0]
    assert valid.tolist() == [True, False]


def test_topk_distribution_temperature():
    # logits [ln 3, 0] / T=2 -> weights [sqrt 3, 1]
    _, probs, _ = topk_distribution(torch.tensor([[0, 1]]), torch.tensor([[math.log(3.0), 0.0]]),
                                    temperature=2.0)
    s = math.sqrt(3.0)
    assert torch.allclose(probs, torch.tensor([[s / (1 + s), 1 / (1 + s)]]))


def test_topk_distribution_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        topk_distribution(torch.tensor([[0, 1]]), torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="differ"):
        topk_distribution(torch.tensor([[0, 1]]), torch.tensor([[0.0]]))
    with pytest.raises(ValueError, match="temperature"):
        topk_distribution(torch.tensor([[0]]), torch.tensor([[0.0]]), temperature=0)


def test_mince_picks_lower_ce_nan_means_unavailable_ties_to_pivot():
    nan = float("nan")
    m = torch.tensor([[2.0, 1.0], [1.0, 2.0], [nan, 3.0], [1.5, nan], [nan, nan], [1.0, 1.0]])
    assert mince_select(m).tolist() == [1, 0, 1, 0, 0, 0]
    assert mince_select(torch.tensor([[3.0, 2.0, 1.0], [0.5, 2.0, 0.7]])).tolist() == [2, 0]
    with pytest.raises(ValueError, match="candidates"):
        mince_select(torch.tensor([1.0, 2.0]))


def test_next_token_mask_is_labels_shifted_left():
    labels = torch.tensor([[-100, 5, 6, -100, 7]])
    assert next_token_mask(labels).tolist() == [[True, True, False, True, False]]


def test_sparse_loss_hand_computed_uniform_model():
    # uniform Q over V=3: log Q = -ln 3; target [0.5, 0.5] on ids {0, 1}
    logits = torch.zeros(1, 1, 3)
    ids, probs = torch.tensor([[[0, 1]]]), torch.tensor([[[0.5, 0.5]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    ce = sparse_fusion_loss(logits, ids, probs, mask, "ce")
    kl = sparse_fusion_loss(logits, ids, probs, mask, "kl")
    assert ce.item() == pytest.approx(math.log(3.0))
    assert kl.item() == pytest.approx(math.log(3.0) - math.log(2.0))


@pytest.mark.parametrize("kind", ["ce", "kl"])
def test_sparse_loss_equals_dense_loss_and_gradient(kind):
    g = torch.Generator().manual_seed(0)
    b, length, v, k = 2, 5, 7, 3
    logits = torch.randn(b, length, v, generator=g, requires_grad=True)
    raw_ids = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(b * length)])
    raw_ids = raw_ids.view(b, length, k)
    raw_ids[0, 2, 2] = PAD_ID
    raw_logits = torch.randn(b, length, k, generator=g)
    raw_logits[0, 2, 2] = PAD_LOGIT
    ids, probs, _ = topk_distribution(raw_ids, raw_logits, temperature=0.7)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    sparse = sparse_fusion_loss(logits, ids, probs, mask, kind)
    (gs,) = torch.autograd.grad(sparse, logits)
    dense = dense_fusion_loss(logits, dense_targets(ids, probs, v), mask, kind)
    (gd,) = torch.autograd.grad(dense, logits)
    assert sparse.item() == pytest.approx(dense.item(), abs=1e-6)
    assert torch.allclose(gs, gd, atol=1e-7)


def test_kl_and_ce_differ_by_target_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 4, 9, generator=g)
    ids, probs, _ = topk_distribution(torch.stack([torch.randperm(9, generator=g)[:4]
                                                   for _ in range(4)])[None],
                                      torch.randn(1, 4, 4, generator=g))
    mask = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)
    ce = sparse_fusion_loss(logits, ids, probs, mask, "ce")
    kl = sparse_fusion_loss(logits, ids, probs, mask, "kl")
    entropy = -(probs * probs.log()).sum(-1)[mask].mean()
    assert (ce - kl).item() == pytest.approx(entropy.item(), abs=1e-6)
    assert kl.item() >= 0


def test_sft_loss_equals_shifted_cross_entropy():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, 11, generator=g)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, 1, 2, -100, -100, -100]])
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                          ignore_index=-100)
    assert sft_loss(logits, labels).item() == pytest.approx(ref.item(), abs=1e-6)


def test_fusion_objective_mixes_with_lambda():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 4, 6, generator=g)
    labels = torch.tensor([[-100, 2, 3, 4]])
    ids, probs, _ = topk_distribution(torch.tensor([[[0, 1]] * 4]), torch.zeros(1, 4, 2))
    total, sft, fuse = fusion_objective(logits, labels, ids, probs, lam=0.9)
    assert total.item() == pytest.approx(0.9 * sft.item() + 0.1 * fuse.item(), abs=1e-6)
    # fuse by hand: positions 0..2 (labels[t+1] are assistant), target 0.5/0.5 on ids 0, 1
    lq = F.log_softmax(logits[0, :3], -1)
    assert fuse.item() == pytest.approx(float(-(0.5 * lq[:, 0] + 0.5 * lq[:, 1]).mean()),
                                        abs=1e-6)
    only_sft, _, zero = fusion_objective(logits, labels, None, None, lam=1.0)
    assert only_sft.item() == pytest.approx(sft.item()) and zero.item() == 0.0
    with pytest.raises(ValueError, match="needs fusion targets"):
        fusion_objective(logits, labels, None, None, lam=0.5)
    with pytest.raises(ValueError, match="lam"):
        fusion_objective(logits, labels, ids, probs, lam=1.5)


def test_memory_figures_from_shapes():
    # official: pivot + one aligned dense bf16 target per sample, B=4 x 2048 x 32000
    assert dense_target_bytes(4, 2048, 32000) == 4 * 2048 * 32000 * 2 * 2
    assert sparse_target_bytes(4, 2048, 10) == 4 * 2048 * 10 * (8 + 4)
