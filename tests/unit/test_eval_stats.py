"""workbench.eval.stats against hand-computed values."""

import math

import numpy as np
import pytest

from workbench.eval import stats as S
from workbench.eval.stats import Estimate


@pytest.mark.parametrize("df,q", [(1, 12.7062047), (4, 2.7764451), (10, 2.2281389), (30, 2.0422725)])
def test_t_quantile_matches_tables(df, q):
    assert S.t_quantile(0.975, df) == pytest.approx(q, abs=1e-6)
    assert S.t_quantile(0.025, df) == pytest.approx(-q, abs=1e-6)


def test_mean_ci_by_hand():
    # mean 3, s = sqrt(2.5), se = sqrt(2.5)/sqrt(5) = 0.70711, t(0.975, 4) = 2.77645
    e = S.mean_ci([1, 2, 3, 4, 5])
    assert (e.value, e.n, e.method) == (3.0, 5, "t")
    assert e.stderr == pytest.approx(0.7071068, abs=1e-6)
    assert e.lo == pytest.approx(3 - 1.9632432, abs=1e-6)
    assert e.hi == pytest.approx(3 + 1.9632432, abs=1e-6)


def test_mean_ci_single_item_has_no_interval():
    e = S.mean_ci([4.0])
    assert e.value == 4.0 and e.n == 1 and not e.has_ci
    assert e.to_dict()["lo"] is None and e.to_dict()["stderr"] is None
    assert S.verdict(e, "greater") == S.INCONCLUSIVE


def test_non_finite_values_are_named():
    with pytest.raises(ValueError, match="non-finite"):
        S.mean_ci([1.0, float("nan")])


def test_wilson_by_hand():
    # 8/10: centre (0.8 + z²/20)/(1 + z²/10) = 0.71672, half 0.22658 -> [0.4902, 0.9433]
    e = S.proportion_ci(8, 10)
    assert e.value == 0.8 and e.n == 10
    assert e.lo == pytest.approx(0.49016, abs=1e-4)
    assert e.hi == pytest.approx(0.94332, abs=1e-4)
    assert e.stderr == pytest.approx(math.sqrt(0.8 * 0.2 / 9))
    zero = S.proportion_ci(0, 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(0.27753, abs=1e-4)


def test_binomial_stderr_like_lm_eval():
    assert S.binomial_stderr(0.5, 5) == pytest.approx(0.25)             # sqrt(.25 / 4)
    assert S.binomial_stderr(0.5, 5, ddof=0) == pytest.approx(math.sqrt(0.05))
    scores = np.array([1, 0, 1, 1, 0, 1, 1, 0], dtype=float)          # lm-eval: std(ddof=1)/sqrt(n)
    assert S.binomial_stderr(scores.mean(), 8) == pytest.approx(scores.std(ddof=1) / math.sqrt(8))
    assert math.isnan(S.binomial_stderr(1.0, 1))


def test_bootstrap_seeded_and_sane():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, size=400)
    a, b = S.bootstrap_ci(x, seed=3), S.bootstrap_ci(x, seed=3)
    assert a == b
    t = S.mean_ci(x)
    assert a.value == pytest.approx(x.mean())
    assert a.lo == pytest.approx(t.lo, abs=0.05) and a.hi == pytest.approx(t.hi, abs=0.05)
    assert a.stderr == pytest.approx(t.stderr, rel=0.15)
    const = S.bootstrap_ci([2.0, 2.0, 2.0])
    assert (const.lo, const.value, const.hi) == (2.0, 2.0, 2.0)


def test_bootstrap_statistic_without_axis():
    e = S.bootstrap_ci([1, 2, 3, 100], statistic=lambda v: float(np.median(v)), n_boot=200)
    assert e.value == 2.5 and e.lo <= 2.5 <= e.hi


def test_paired_bootstrap_constant_shift():
    b = np.array([3.0, 7.0, 1.0, 9.0, 4.0])
    d = S.paired_bootstrap_ci(b + 1.5, b)
    assert d.value == pytest.approx(1.5)
    assert d.lo == pytest.approx(1.5) and d.hi == pytest.approx(1.5)   # pairing removes item noise
    assert S.bootstrap_ci(b + 1.5).hi - S.bootstrap_ci(b + 1.5).lo > 2   # unpaired it would not


def test_paired_bootstrap_weighted_by_hand():
    # weighted means: a = (1*1 + 3*3)/4 = 2.5, b = (0*1 + 1*3)/4 = 0.75 -> 1.75
    d = S.paired_bootstrap_ci([1.0, 3.0], [0.0, 1.0], weights=[1, 3], n_boot=500)
    assert d.value == pytest.approx(1.75)
    assert 1.0 <= d.lo <= d.hi <= 2.0
    with pytest.raises(ValueError, match="differ in length"):
        S.paired_bootstrap_ci([1.0], [1.0, 2.0])


def test_from_stderr_and_difference():
    e = S.from_stderr(0.6, 0.05, 100)
    assert e.lo == pytest.approx(0.6 - 1.959964 * 0.05, abs=1e-6)
    d = S.difference(S.from_stderr(1.0, 0.3, 10), S.from_stderr(0.5, 0.4, 12))
    assert d.value == 0.5 and d.stderr == pytest.approx(0.5) and d.n == 10
    assert not S.difference(Estimate(1.0, math.nan, math.nan, 1), e).has_ci


@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.1, 0.5, "greater", S.REPRODUCED),
    (-0.5, -0.1, "greater", S.NOT_REPRODUCED),
    (-0.1, 0.5, "greater", S.INCONCLUSIVE),
    (0.0, 0.0, "greater", S.NOT_REPRODUCED),      # a tie does not show "strictly greater"
    (0.0, 0.0, "greater_equal", S.REPRODUCED),    # ... but does show ">="
    (-0.5, -0.1, "less", S.REPRODUCED),
    (0.1, 0.5, "less", S.NOT_REPRODUCED),
    (-0.3, 0.2, "<", S.INCONCLUSIVE),
    (-0.2, 0.0, "<=", S.REPRODUCED),
    (0.1, 0.4, "<=", S.NOT_REPRODUCED),
])
def test_verdict(lo, hi, direction, expected):
    assert S.verdict(Estimate((lo + hi) / 2, lo, hi, 20), direction) == expected


def test_verdict_margin_and_bad_direction():
    win = Estimate(0.62, 0.55, 0.69, 50)
    assert S.verdict(win, "greater", margin=0.5) == S.REPRODUCED
    assert S.verdict(win, "greater", margin=0.6) == S.INCONCLUSIVE
    assert S.verdict(win, "greater", margin=0.7) == S.NOT_REPRODUCED
    with pytest.raises(ValueError, match="direction 'bigger'"):
        S.verdict(win, "bigger")


def test_formatting_never_negative_zero():
    assert S.fmt_ci(Estimate(12.34, 11.04, 13.56, 40)) == "12.3 [11.0, 13.6] (n=40)"
    assert S.fmt_ci(Estimate(-0.0004, -0.01, 0.009, 8), 2) == "0.00 [-0.01, 0.01] (n=8)"
    assert S.fmt_ci(Estimate(0.5, math.nan, math.nan, 1)) == "0.5 (n=1, no CI)"
    assert S.fmt_ci(Estimate(0.123, 0.1, 0.15, 9), 1, scale=100, unit="%") == "12.3% [10.0, 15.0] (n=9)"
    assert S.fmt_num(None) == "–" and S.fmt_num(-0.001, 2) == "0.00"


def test_columns_and_roundtrip():
    e = S.proportion_ci(3, 4)
    cols = S.columns("acc", e, digits=4)
    assert cols["n"] == 4 and cols["acc"] == 0.75 and cols["acc_lo"] < 0.75 < cols["acc_hi"]
    assert Estimate.from_dict(e.to_dict()) == e


def test_item_cis_switch_from_t_to_bootstrap_at_20_items():
    small = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert S.item_ci(small) == S.mean_ci(small)
    big = list(range(25))
    assert S.item_ci(big) == S.bootstrap_ci(big)
    d = S.paired_item_ci([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])  # differences 1, 2, 3
    t = S.mean_ci([1.0, 2.0, 3.0])
    assert (d.value, d.lo, d.hi, d.method) == (t.value, t.lo, t.hi, "paired t")
    w = S.paired_item_ci([2.0, 3.0, 5.0], [1.0, 1.0, 2.0], weights=[1, 1, 1])
    # equal weights: the weighted (linearised ratio) t interval is the paired t interval
    assert w.method == "weighted paired t" and w.value == pytest.approx(2.0)
    assert (w.lo, w.hi) == pytest.approx((t.lo, t.hi))
    big_w = S.paired_item_ci(list(range(25)), [0.0] * 25, weights=[1.0] * 25)
    assert big_w.method == "paired bootstrap"
