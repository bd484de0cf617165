"""ALC: the trapezoid area under mAP@0.5 vs the labeled fraction, divided by the fraction's span."""
import numpy as np
import pandas as pd
import pytest

from activedet.report import area_under_curve, summarize

# uneven steps: 5% -> 10% -> 20% -> 25% labeled
FRACTION = [0.05, 0.10, 0.20, 0.25]
MAP = [0.2, 0.3, 0.5, 0.4]
# trapezoids: 0.05·(0.2+0.3)/2 + 0.10·(0.3+0.5)/2 + 0.05·(0.5+0.4)/2 = 0.0125 + 0.04 + 0.0225 = 0.075; span 0.20
BY_HAND = 0.075 / 0.20


def test_alc_is_the_trapezoid_over_the_fraction_divided_by_its_span_not_the_mean_of_the_cycles():
    assert area_under_curve(np.array(FRACTION), np.array(MAP)) == pytest.approx(BY_HAND)
    assert BY_HAND != pytest.approx(np.mean(MAP))  # 0.375 vs 0.35: the mean over cycles is another number
    order = [2, 0, 3, 1]  # rows in any order
    assert area_under_curve(np.array(FRACTION)[order], np.array(MAP)[order]) == pytest.approx(BY_HAND)
    assert area_under_curve(np.array([0.1]), np.array([0.3])) == pytest.approx(0.3)  # one point: its mAP


def test_summary_alc_and_paired_difference_follow_the_trapezoid_per_seed():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for c, (f, m) in enumerate(zip(FRACTION, MAP)):
            # boxes and annotation seconds in proportion to the images (the cost columns the report adds)
            cost = {"n_boxes": int(f * 400) * 2, "annotation_s": int(f * 400) * 70.0}
            rows.append({"strategy": "random", "seed": seed, "cycle": c, "n_labeled": int(f * 400), "fraction": f,
                         "map50": m + shift, **cost})
            rows.append({"strategy": "x", "seed": seed, "cycle": c, "n_labeled": int(f * 400), "fraction": f,
                         "map50": m + shift + (0.1 if c == 2 else 0.0), **cost})  # +0.1 only at 20%
    s = summarize(pd.DataFrame(rows)).set_index("strategy")
    assert s.loc["random", "alc_mean"] == pytest.approx(BY_HAND + 0.05)
    # +0.1 at the 20% point adds its two neighbouring half-trapezoids: (0.10 + 0.05)/2 · 0.1 / 0.20 = 0.0375
    assert s.loc["x", "alc_diff_vs_random"] == pytest.approx(0.0375)


def test_paired_cycle_differences_by_hand():
    from activedet.curve_stats import paired_cycle_differences

    rows = []
    # A - B per seed at cycle 0: 0.02, 0.04, 0.06 -> mean 0.04, sd 0.02, t(0.975, 2) = 4.3027 -> half 0.04969
    for seed, (a, b) in enumerate([(0.52, 0.50), (0.54, 0.50), (0.56, 0.50)]):
        rows += [{"strategy": "A", "seed": seed, "cycle": 0, "n_labeled": 100, "map50": a},
                 {"strategy": "B", "seed": seed, "cycle": 0, "n_labeled": 100, "map50": b}]
    # cycle 1: A ahead by 0.10 on every seed (zero spread), and a seed of B that A did not run (not paired)
    for seed in range(3):
        rows += [{"strategy": "A", "seed": seed, "cycle": 1, "n_labeled": 200, "map50": 0.7},
                 {"strategy": "B", "seed": seed, "cycle": 1, "n_labeled": 200, "map50": 0.6}]
    rows.append({"strategy": "B", "seed": 9, "cycle": 1, "n_labeled": 200, "map50": 0.0})
    out = paired_cycle_differences(pd.DataFrame(rows), "A").set_index("cycle")
    assert list(out["other"]) == ["B", "B"] and list(out["seeds"]) == [3, 3]
    half = 4.302653 * 0.02 / np.sqrt(3)
    assert out.loc[0, "diff_mean"] == pytest.approx(0.04)
    assert out.loc[0, "ci_low"] == pytest.approx(0.04 - half, abs=1e-6)
    assert out.loc[0, "ci_high"] == pytest.approx(0.04 + half, abs=1e-6)
    assert not out.loc[0, "ahead"]  # 0.04 - 0.0497 < 0
    assert out.loc[1, "diff_mean"] == pytest.approx(0.1) and out.loc[1, "ahead"]
    assert out.loc[1, "n_labeled"] == 200
