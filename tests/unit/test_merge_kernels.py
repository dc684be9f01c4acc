"""Merge kernels against hand-computed tensors (FuseChat SCE, VaRM, linear, TA, TIES, DARE)."""

import pytest
import torch
from torch.testing import assert_close

from workbench.fusion.merge import (
    MERGE_METHODS,
    dare,
    dare_linear,
    linear,
    magnitude_mask,
    sce,
    sce_coefficients,
    sce_erase_mask,
    sce_select_mask,
    task_arithmetic,
    ties,
    varm,
)

T = torch.tensor
# base 0; var over targets = [1, 0, 0, 4] -> 2 non-zero entries
D1, D2 = T([1.0, 0.0, 2.0, 0.0]), T([3.0, 0.0, 2.0, -4.0])


def test_registry_has_every_method_with_a_paper():
    assert MERGE_METHODS.names() == ["dare_linear", "linear", "sce", "task_arithmetic", "ties",
                                     "varm"]
    assert all(MERGE_METHODS.meta(m)["paper"].startswith("https://") for m in MERGE_METHODS)
    with pytest.raises(ValueError, match="Did you mean: sce"):
        MERGE_METHODS.get("sec")


def test_sce_select_keeps_top_fraction_of_nonzero_variance():
    deltas = torch.stack([D1, D2])
    # k = int(0.5 * 2) = 1 -> only the largest variance (entry 3, var 4)
    assert_close(sce_select_mask(deltas, 0.5), T([0.0, 0.0, 0.0, 1.0]))
    assert_close(sce_select_mask(deltas, 0.99), T([0.0, 0.0, 0.0, 1.0]))  # int(1.98) = 1
    assert_close(sce_select_mask(deltas, 0.1), torch.zeros(4))  # k = 0
    # tau >= 1 disables Select
    assert_close(sce_select_mask(deltas, 1.0), torch.ones(4))
    assert_close(sce_select_mask(deltas, 3.0), torch.ones(4))
    with pytest.raises(ValueError, match="select_topk"):
        sce_select_mask(deltas, 0.0)


def test_topk_mask_matches_topk_and_breaks_ties_by_index():
    from workbench.fusion.merge.registry import topk_mask

    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    for k in (0, 1, 100, 600, 1000):
        want = torch.zeros(1000)
        want[torch.topk(x, k).indices] = 1.0
        assert torch.equal(topk_mask(x, k, torch.float32), want)
    # ties at the k-th value: exactly k entries, the first tied ones in index order
    got = topk_mask(T([[1.0, 5.0, 1.0], [1.0, 0.0, 1.0]]), 3, torch.float32)
    assert torch.equal(got, T([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_sce_calculate_eta():
    # energies 2 and 4 -> [1/3, 2/3]; all-zero -> uniform
    assert_close(sce_coefficients(T([[1.0, 1.0], [2.0, 0.0]])), T([1 / 3, 2 / 3]))
    assert_close(sce_coefficients(torch.zeros(3, 5)), torch.full((3,), 1 / 3))


def test_sce_erase_sign_vote_with_ties_and_zeros():
    # sum = [0, -3, 0] -> majority [+1 (tie), -1, +1 (tie)]; zero entries never agree
    deltas = T([[1.0, -1.0, 0.0], [-1.0, -2.0, 0.0]])
    assert_close(sce_erase_mask(deltas), T([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))


def test_sce_style_brief_example_tau_1():
    merged = sce(torch.zeros(2), [T([1.0, -1.0]), T([3.0, 2.0])], select_topk=1.0)
    # eta = [2, 13] / 15; the vote erases -1 of delta_1 -> entry 0: (2*1 + 13*3) / 15
    assert_close(merged, T([41 / 15, 2.0]))


def test_sce_official_vs_masked_variants():
    base = torch.zeros(4)
    # mask [0,0,0,1] -> eta = [0, 1]; official merges the unmasked deltas
    assert_close(sce(base, [D1, D2], select_topk=0.5), T([3.0, 0.0, 2.0, -4.0]))
    # masked: only entry 3 survives
    assert_close(sce(base, [D1, D2], select_topk=0.5, variant="masked"), T([0.0, 0.0, 0.0, -4.0]))
    with pytest.raises(ValueError, match="variant"):
        sce(base, [D1, D2], variant="weights")


def test_sce_tau_ge_1_identical_and_variants_agree():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    ts = [base + torch.randn(6, 5, generator=g) for _ in range(3)]
    a = sce(base, ts, select_topk=1.0)
    assert_close(a, sce(base, ts, select_topk=7.0))
    assert_close(a, sce(base, ts, select_topk=1.0, variant="masked"))


def test_varm_hand_computed_and_equals_sce_tau1_no_erase():
    merged = varm(torch.zeros(2), [T([1.0, -1.0]), T([3.0, 2.0])])
    assert_close(merged, T([41 / 15, 24 / 15]))
    g = torch.Generator().manual_seed(1)
    base = torch.randn(8, 3, generator=g)
    ts = [base + torch.randn(8, 3, generator=g) * s for s in (0.1, 1.0, 3.0)]
    assert_close(varm(base, ts), sce(base, ts, select_topk=1.0, erase=False))


@pytest.mark.parametrize("method", ["sce", "varm", "linear", "task_arithmetic", "ties",
                                    "dare_linear"])
def test_zero_deltas_return_base(method):
    base = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    fn = MERGE_METHODS.get(method)
    extra = {"density": 0.5, "generator": torch.Generator().manual_seed(0)} \
        if method == "dare_linear" else {"density": 0.5} if method == "ties" else {}
    assert_close(fn(base, [base.clone(), base.clone()], **extra), base)


@pytest.mark.parametrize("method", ["sce", "varm", "task_arithmetic", "ties"])
def test_dtype_and_device_follow_base(method):
    base = torch.randn(5, 4).to(torch.bfloat16)
    out = MERGE_METHODS.get(method)(base, [base + 1, base - 0.5])
    assert out.dtype == torch.bfloat16 and out.device == base.device


def test_linear_weights_and_normalize():
    ts = [T([1.0, 2.0]), T([3.0, 6.0])]
    assert_close(linear(torch.zeros(2), ts, weight=[1.0, 3.0]), T([2.5, 5.0]))
    assert_close(linear(torch.zeros(2), ts, weight=[1.0, 3.0], normalize=False), T([10.0, 20.0]))
    assert_close(linear(torch.zeros(2), ts), T([2.0, 4.0]))
    with pytest.raises(ValueError, match="one value per input"):
        linear(torch.zeros(2), ts, weight=[1.0])


def test_task_arithmetic():
    base, ts = T([1.0, 1.0]), [T([2.0, 0.0]), T([1.0, 3.0])]  # deltas [1,-1], [0,2]
    assert_close(task_arithmetic(base, ts, weight=[0.5, 1.0]), T([1.5, 2.5]))
    assert_close(task_arithmetic(base, ts, weight=[0.5, 1.0], lambda_=2.0), T([2.0, 4.0]))
    assert_close(task_arithmetic(base, ts, normalize=True), T([1.5, 1.5]))


def test_ties_trim_elect_merge():
    d1, d2 = T([3.0, -1.0, 0.5, 2.0]), T([-1.0, -2.0, 1.0, -3.0])
    assert_close(magnitude_mask(d1, 0.5), T([1.0, 0.0, 0.0, 1.0]))
    # trimmed [3,0,0,2], [0,-2,0,-3]; sum [3,-2,0,-1] -> signs [+,-,+ (tie),-]
    assert_close(ties(torch.zeros(4), [d1, d2], density=0.5), T([3.0, -2.0, 0.0, -3.0]))


def test_ties_sign_vote_tie_goes_positive():
    # entry 0: 2 + (-2) = 0 -> +1 wins, only delta_1 kept; entry 1: both agree -> mean
    assert_close(ties(torch.zeros(2), [T([2.0, 1.0]), T([-2.0, 1.0])]), T([2.0, 1.0]))
    # weights enter the vote: 1*2 + 3*(-2) < 0 -> negative side wins
    assert_close(ties(torch.zeros(1), [T([2.0]), T([-2.0])], weight=[1.0, 3.0]), T([-2.0]))


def test_dare_drop_and_rescale_with_explicit_generator():
    delta = torch.ones(1000)
    out = dare(delta, 0.25, generator=torch.Generator().manual_seed(3))
    keep = torch.rand(1000, generator=torch.Generator().manual_seed(3)) < 0.25
    assert_close(out, keep.float() / 0.25)
    assert_close(dare(delta, 1.0), delta)
    # global RNG untouched by a generator-driven call
    state = torch.get_rng_state()
    dare(delta, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_dare_linear_density_1_is_normalized_task_arithmetic_and_seeded():
    base, ts = T([1.0, 1.0]), [T([2.0, 0.0]), T([1.0, 3.0])]
    assert_close(dare_linear(base, ts), T([1.5, 1.5]))
    g = torch.Generator().manual_seed(0)
    b = torch.randn(50)
    xs = [b + torch.randn(50, generator=g) for _ in range(2)]
    run = [dare_linear(b, xs, density=0.5, generator=torch.Generator().manual_seed(s))
           for s in (7, 7, 8)]
    assert_close(run[0], run[1])
    assert not torch.equal(run[0], run[2])
