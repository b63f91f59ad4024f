"""nst_core.compress.scan.table: profile selection, and the rank correlations of proxy vs judged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nst_core.compress.pruning import Profile
from nst_core.compress.scan import (
    ScanError,
    kendall_tau_b,
    rank_agreement,
    select_profile,
    select_sparsity,
    spearman_rho,
)


def test_profile_selected_from_a_synthetic_table_matches_hand_worked_expectations(synthetic_table):
    table = synthetic_table(
        [
            # conv1_2: passes 0.4..0.6 (worst degradation 0.02, 0.05, 0.08), fails at 0.7 (style +0.15)
            ("conv1_2", 0.4, 1.02, 1.01, 0.99),
            ("conv1_2", 0.5, 1.05, 1.02, 0.98),
            ("conv1_2", 0.6, 1.03, 1.08, 0.97),
            ("conv1_2", 0.7, 1.04, 1.15, 0.96),
            # conv2_1: fails at the lowest level on SSIM (1 - 0.85 = 0.15) -> stays dense
            ("conv2_1", 0.4, 1.00, 1.00, 0.85),
            ("conv2_1", 0.5, 1.00, 1.00, 0.99),
            ("conv2_1", 0.6, 1.00, 1.00, 0.99),
            ("conv2_1", 0.7, 1.00, 1.00, 0.99),
            # conv3_1: passes at 0.4 and 0.5, fails at 0.6, passes again at 0.7 (noise) -> 0.5, not 0.7
            ("conv3_1", 0.4, 1.01, 1.00, 0.99),
            ("conv3_1", 0.5, 1.09, 1.00, 0.99),
            ("conv3_1", 0.6, 1.11, 1.00, 0.99),
            ("conv3_1", 0.7, 1.01, 1.00, 0.99),
            # conv4_1: everything within tolerance, even better than dense -> 0.7
            ("conv4_1", 0.4, 0.98, 0.97, 0.99),
            ("conv4_1", 0.5, 0.99, 0.97, 0.99),
            ("conv4_1", 0.6, 1.00, 0.98, 0.99),
            ("conv4_1", 0.7, 1.09, 0.99, 0.95),
        ]
    )
    profile = select_profile(table, tolerance=0.1)
    assert isinstance(profile, Profile) and profile.method == "fine"
    assert profile.sparsity == {"conv1_2": 0.6, "conv2_1": 0.0, "conv3_1": 0.5, "conv4_1": 0.7}
    assert profile.source["tolerance"] == 0.1 and profile.source["degradation"] == "worst"
    # By style alone conv1_2 fails at 0.7 (0.15 > 0.1); conv2_1 and conv3_1 never fail on style.
    assert select_profile(table, 0.1, "style").sparsity == {
        "conv1_2": 0.6,
        "conv2_1": 0.7,
        "conv3_1": 0.7,
        "conv4_1": 0.7,
    }
    # Tighter: conv1_2 stops at 0.4 (0.05 at 0.5 > 0.03); conv4_1 at 0.6 (0.01 each up to 0.6, then 0.09).
    assert select_profile(table, 0.03).sparsity == {"conv1_2": 0.4, "conv2_1": 0.0, "conv3_1": 0.4, "conv4_1": 0.6}
    assert select_sparsity([(0.5, float("nan")), (0.4, 0.0)], 0.1) == 0.4
    with pytest.raises(ScanError):
        select_profile(table, -1)


def test_rank_agreement_on_synthetic_rows(synthetic_table):
    table = synthetic_table([("conv1_1", s, 1 + s, 1 + 2 * s, 1 - s / 10) for s in (0.2, 0.4, 0.6, 0.8)])
    agreement = {a["proxy"] + "/" + a["judged"]: a for a in rank_agreement(table.rows)}
    assert agreement["feature_distortion/content_ratio - 1"]["spearman"] == pytest.approx(1.0)
    assert agreement["gram_distortion/style_ratio - 1"]["kendall"] == pytest.approx(1.0)
    assert agreement["proxy/worst degradation"]["spearman"] is None  # a constant proxy has no ranking


def test_rank_correlations_match_hand_worked_values():
    # No ties: two adjacent swaps. Spearman: d = (-1, 1, -1, 1, 0), 1 - 6 * 4 / (5 * 24) = 0.8.
    # Kendall: 10 pairs, the two swapped ones discordant: (8 - 2) / 10 = 0.6.
    assert spearman_rho([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.6)
    # A tie in x: ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4). Spearman = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    # Kendall: 5 concordant, 0 discordant, 1 pair tied in x: tau-b = 5 / sqrt(5 * 6); tau-a would be 5/6.
    assert spearman_rho([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    # A failed cell's infinite degradation is simply the largest rank.
    assert spearman_rho([0.1, 0.2, 0.3], [1.0, 2.0, math.inf]) == pytest.approx(1.0)
    assert kendall_tau_b([0.3, 0.2, 0.1], [math.inf, math.inf, 1.0]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Undefined: a constant sample, a NaN, a single pair.
    for xs, ys in (([1, 1, 1], [1, 2, 3]), ([1, 2, math.nan], [1, 2, 3]), ([1], [2])):
        assert spearman_rho(xs, ys) is None and kendall_tau_b(xs, ys) is None


def test_rank_correlations_agree_with_scipy_with_ties_and_infinities():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (3, 7, 20, 60):
        xs = rng.integers(0, 5, n).astype(float)
        ys = rng.integers(0, 4, n).astype(float)
        xs[0], ys[1], ys[2] = math.inf, math.inf, math.inf
        assert spearman_rho(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic, abs=1e-12)
        assert kendall_tau_b(xs, ys) == pytest.approx(stats.kendalltau(xs, ys).statistic, abs=1e-12)
