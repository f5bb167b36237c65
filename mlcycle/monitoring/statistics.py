"""Two-sample statistics for drift, in NumPy: the values SciPy gives, without SciPy.

Every function takes plain arrays (values, or counts per category) and returns floats, never NaN for a
valid input. The ``*_sorted`` forms take samples already sorted and free of NaN, so that a caller that
sorted a column once (the drift engine, or a baseline sorted at training time) computes the KS statistic
and the Wasserstein distance from the same sort.

=================================  =====================================================================
function                           the SciPy (or Evidently) value it reproduces
=================================  =====================================================================
:func:`ks_2samp`                   ``scipy.stats.ks_2samp(a, b)`` (two-sided, ``method="auto"``)
:func:`chisquare`                  ``scipy.stats.chisquare(observed, expected)``
:func:`chi2_homogeneity`           ``scipy.stats.chi2_contingency([a, b], correction=False)`` over the
                                   categories seen in either sample
:func:`proportions_z_test`         the pooled two-proportion z-test (Evidently's ``z`` stattest), with
                                   ``2 * norm.sf(|z|)``
:func:`wasserstein`                ``scipy.stats.wasserstein_distance(a, b)``
:func:`normalized_wasserstein`     Evidently's ``wasserstein``: the distance / max(std(reference), 0.001)
:func:`jensen_shannon`             ``scipy.spatial.distance.jensenshannon(p, q, base)``
:func:`psi`                        Evidently's PSI on shares (empty bins filled as Evidently fills them)
=================================  =====================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlcycle.monitoring.distributions import chi2_sf, kolmogorov_sf, ks_two_sample_exact_sf, normal_sf

#: ks_2samp's ``method="auto"`` is exact while both samples have at most this many values.
KS_EXACT_MAX_N = 10_000

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class TestResult:
    """A test statistic with its p-value."""

    statistic: float
    p_value: float


def _as_float(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64).ravel()


# --- Kolmogorov-Smirnov -----------------------------------------------------------------------------


def ks_2samp(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Two-sample two-sided Kolmogorov-Smirnov test; NaNs are dropped (as Evidently drops them)."""
    x, y = _as_float(a), _as_float(b)
    return ks_2samp_sorted(np.sort(x[~np.isnan(x)]), np.sort(y[~np.isnan(y)]))


def ks_2samp_sorted(a: FloatArray, b: FloatArray) -> TestResult:
    """:func:`ks_2samp` on sorted samples without NaN."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("ks_2samp needs at least one value in each sample")
    d = ks_statistic_sorted(a, b)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        # SciPy rounds D to the lattice of possible values i/lcm and reports the rounded value.
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = round(d * lcm)
        p_value = ks_two_sample_exact_sf(n1, n2, h)
        # Like SciPy, a rounding excursion past 1 (D = 1/n for equal sizes) falls back to the asymptotic
        # p-value, which is 1 there too.
        if 0.0 <= p_value <= 1.0:
            return TestResult(h / lcm, p_value)
        d = h / lcm
    return TestResult(d, ks_asymptotic_p_value(d, n1, n2))


def ks_statistic_sorted(a: FloatArray, b: FloatArray) -> float:
    """sup |F_a - F_b| of the empirical CDFs, from two sorted samples, with one binary search.

    F_a - F_b only falls at values of b, so its minimum is at some b_j: (j+1)/n2 - #{a <= b_j}/n1 at the
    last of a run of ties. Its maximum is reached just below some b_j (or after the last b): #{a < b_j}/n1
    - j/n2 at the first of a run. ``#{a < b_j}`` equals ``#{a <= b_j}`` unless b_j also occurs in a, which
    is checked by looking at the a value before it; only those are searched again.
    """
    n1, n2 = len(a), len(b)
    at_or_below = np.searchsorted(a, b, side="right")
    below = at_or_below.copy()
    tied = np.flatnonzero(at_or_below > 0)
    tied = tied[a[at_or_below[tied] - 1] == b[tied]]
    below[tied] = np.searchsorted(a, b[tied], side="left")
    j = np.arange(n2)
    fall = np.max((j + 1) / n2 - at_or_below / n1)
    rise = np.max(below / n1 - j / n2)  # (after the last b, F_a - F_b = F_a - 1 <= 0)
    return float(min(1.0, max(rise, fall, 0.0)))


def ks_asymptotic_p_value(d: float, n1: int, n2: int) -> float:
    """ks_2samp's large-sample p-value: the Kolmogorov distribution at n = round(n1 n2 / (n1 + n2))."""
    big, small = max(n1, n2), min(n1, n2)
    effective_n = round(big * small / (big + small))
    return kolmogorov_sf(max(1, effective_n), d)


# --- categorical tests --------------------------------------------------------------------------------


def chisquare(observed: ArrayLike, expected: ArrayLike) -> TestResult:
    """Pearson's goodness-of-fit test of observed counts against expected counts (same total).

    A category expected 0 times but observed is an infinite statistic and p = 0, as SciPy answers;
    :func:`chi2_homogeneity` is the test to use when the expected counts come from a sample.
    """
    obs, exp = _as_float(observed), _as_float(expected)
    if len(obs) != len(exp) or len(obs) < 2:
        raise ValueError("chisquare needs two or more categories, as many observed as expected")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where((obs == exp), 0.0, (obs - exp) ** 2 / exp)
    statistic = float(np.sum(terms))
    if math.isinf(statistic):
        return TestResult(math.inf, 0.0)
    return TestResult(statistic, chi2_sf(statistic, len(obs) - 1))


def chi2_homogeneity(counts_a: ArrayLike, counts_b: ArrayLike) -> TestResult:
    """Chi-squared test that two samples share their category frequencies (a 2 x K contingency table).

    Categories seen in neither sample are dropped; with fewer than two left there is nothing to test
    (statistic 0, p = 1).
    """
    a, b = _as_float(counts_a), _as_float(counts_b)
    seen = (a + b) > 0
    a, b = a[seen], b[seen]
    n_a, n_b = a.sum(), b.sum()
    if len(a) < 2 or n_a == 0 or n_b == 0:
        return TestResult(0.0, 1.0)
    column = a + b
    total = n_a + n_b
    expected_a = column * (n_a / total)
    expected_b = column * (n_b / total)
    statistic = float(np.sum((a - expected_a) ** 2 / expected_a) + np.sum((b - expected_b) ** 2 / expected_b))
    return TestResult(statistic, chi2_sf(statistic, len(a) - 1))


def proportions_z_test(successes_a: float, n_a: float, successes_b: float, n_b: float) -> TestResult:
    """Two-sided pooled z-test that two samples have the same share of successes.

    Statistic (p_a - p_b) / sqrt(P (1 - P) (1/n_a + 1/n_b)) with the pooled share P. When P is 0 or 1
    both samples hold one same value: z = 0, p = 1 (where the formula would divide by zero).
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError("proportions_z_test needs both samples non-empty")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return TestResult(0.0, 1.0)
    z = (p_a - p_b) / math.sqrt(variance)
    return TestResult(z, min(1.0, 2 * normal_sf(abs(z))))


# --- distances ----------------------------------------------------------------------------------------


def wasserstein(a: ArrayLike, b: ArrayLike) -> float:
    """First Wasserstein (earth mover's) distance between two samples; NaNs are dropped."""
    x, y = _as_float(a), _as_float(b)
    return wasserstein_sorted(np.sort(x[~np.isnan(x)]), np.sort(y[~np.isnan(y)]))


def wasserstein_sorted(a: FloatArray, b: FloatArray) -> float:
    """:func:`wasserstein` on sorted samples, in O(n1 + n2) without a merge by value.

    W1 is also the integral over t in (0, 1] of |Q_a(t) - Q_b(t)| (the quantile functions), which are
    steps: Q_b is b[j] on (j/n2, (j+1)/n2]. With n1 <= n2, a's steps are at least as far apart as b's, so
    each of b's pieces meets at most two of a's: a[start] on the part before a's next step and a[end]
    after it. Which pieces meet is arithmetic on the indices; no search, no sort.
    """
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("wasserstein needs at least one value in each sample")
    if n1 > n2:
        a, b, n1, n2 = b, a, n2, n1
    if n1 == n2:
        return float(np.mean(np.abs(a - b)))
    j = np.arange(n2, dtype=np.float64)
    # j * n1 is exact in float64 and the quotient is correctly rounded; a non-integer quotient is at
    # least 1/n2 away from an integer, so floor and ceil are exact.
    start = np.floor(j * n1 / n2).astype(np.int64)
    end = np.minimum(np.ceil((j + 1) * n1 / n2).astype(np.int64) - 1, n1 - 1)
    # The share of b's piece j before a's step at (start + 1)/n1 (1 when the step lies beyond it).
    before = np.clip((start + 1) * (n2 / n1) - j, 0.0, 1.0)
    # einsum, not `@`: a BLAS dot may wake its thread pool, which costs milliseconds on a busy machine
    total = np.einsum("i,i->", np.abs(a[start] - b), before) + np.einsum(
        "i,i->", np.abs(a[end] - b), 1.0 - before
    )
    return float(total / n2)


def normalized_wasserstein(reference: ArrayLike, current: ArrayLike) -> float:
    """Wasserstein distance divided by the reference's std (at least 0.001), as Evidently normalises it."""
    ref, cur = _as_float(reference), _as_float(current)
    ref, cur = np.sort(ref[~np.isnan(ref)]), np.sort(cur[~np.isnan(cur)])
    return wasserstein_sorted(ref, cur) / max(float(np.std(ref)), 0.001)


def jensen_shannon(p: ArrayLike, q: ArrayLike, base: float | None = None) -> float:
    """Jensen-Shannon distance (the square root of the divergence) of two count or share vectors."""
    x, y = _as_float(p), _as_float(q)
    sx, sy = x.sum(), y.sum()
    if sx <= 0 or sy <= 0:
        raise ValueError("jensen_shannon needs a positive total on each side")
    x, y = x / sx, y / sy
    middle = (x + y) / 2.0
    divergence = _relative_entropy(x, middle) + _relative_entropy(y, middle)
    if base is not None:
        divergence /= math.log(base)
    return math.sqrt(max(divergence / 2.0, 0.0))


def _relative_entropy(x: FloatArray, y: FloatArray) -> float:
    positive = x > 0
    return float(np.sum(x[positive] * np.log(x[positive] / y[positive])))


def fill_empty_shares(shares: ArrayLike) -> FloatArray:
    """Evidently's fill of empty bins before PSI: 0.0001, or a millionth of the smallest share if that is
    smaller, so that the logarithm stays finite."""
    values = _as_float(shares).copy()
    nonzero = values[values > 0]
    if not len(nonzero):
        return values
    smallest = float(nonzero.min())
    values[values == 0] = smallest / 1e6 if smallest <= 0.0001 else 0.0001
    return values


def psi(reference_shares: ArrayLike, current_shares: ArrayLike) -> float:
    """Population stability index sum (r - c) ln(r / c) over bins, empty bins filled first."""
    r, c = fill_empty_shares(reference_shares), fill_empty_shares(current_shares)
    if np.any(r <= 0) or np.any(c <= 0):
        return 0.0 if np.array_equal(r, c) else math.inf
    return float(np.sum((r - c) * np.log(r / c)))


def total_variation(counts_a: ArrayLike, counts_b: ArrayLike) -> float:
    """Half the L1 distance between two frequency vectors (0: same shares, 1: disjoint)."""
    a, b = _as_float(counts_a), _as_float(counts_b)
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        return 0.0 if sa == sb else 1.0
    return float(np.abs(a / sa - b / sb).sum() / 2.0)
