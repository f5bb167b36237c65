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
from collections.abc import Iterator
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


# --- the Wasserstein distance of large unsorted samples --------------------------------------------

#: Parts with at most this many values are sorted and integrated value by value.
_SORT_MAX_VALUES = 4096
_GRID_MAX = 1 << 18
_GRID_SAMPLE = 20_000
_MAX_DEPTH = 4
#: Integer samples spanning at most this many values are counted per value.
_INTEGER_SPAN = 1 << 16


def wasserstein_unsorted(a: FloatArray, b: FloatArray) -> float:
    """:func:`wasserstein` of two samples without NaN, in any order, without sorting them.

    W1 is the integral of |D| with D = F_a - F_b. Cut the line into equal buckets (between the 0.1% and
    99.9% quantiles of a strided sample, about one per 8 values) and read per bucket only the counts and
    the sum of positions (two ``bincount`` passes per side): inside a bucket D moves between D_before -
    cb/m and D_before + ca/n, and where that range does not straddle zero the integral of |D| is the
    absolute value of the integral of D, which the sums give exactly. Only the buckets where F_a and F_b
    cross are resolved value by value (their few values sorted); what lies outside the quantiles is the
    same problem again on fewer values. Exact up to rounding: SciPy's value to ~1e-12, ties and outliers
    included. At 1M values a side this takes a fraction of one sort of them.
    """
    n, m = len(a), len(b)
    if not n or not m:
        raise ValueError("wasserstein needs at least one value in each sample")
    end = max(float(np.max(a)), float(np.max(b)))
    whole = _integer_wasserstein(a, b, end)
    if whole is not None:
        return whole
    return _integral(_Part(a, b, 1.0 / n, 1.0 / m, 0.0, end), 0)


def _integer_wasserstein(a: FloatArray, b: FloatArray, end: float) -> float | None:
    """W1 of two samples of integers over a span of at most a few values per value, by counting each
    integer (None when they are not such samples): D only changes at integers, so W1 is the sum of |D|
    over the unit gaps. Counts, ages, levels: the columns whose values tie most, where sorting cells
    would gain least."""
    n, m = len(a), len(b)
    start = min(float(np.min(a)), float(np.min(b)))
    span = end - start
    if span > min(4 * (n + m), _INTEGER_SPAN) or n + m <= _SORT_MAX_VALUES:
        return None
    stride = max(1, n // _GRID_SAMPLE)
    if not np.array_equal(a[::stride], np.round(a[::stride])):
        return None
    counts = []
    for values in (a, b):
        total = np.zeros(int(span) + 1, dtype=np.intp)
        offsets = np.empty(min(_BLOCK, len(values)))
        whole = np.empty(len(offsets), dtype=np.intp)
        for first in range(0, len(values), _BLOCK):
            block = values[first : first + _BLOCK]
            q, k = offsets[: len(block)], whole[: len(block)]
            np.subtract(block, start, out=q)
            k[...] = q
            if not np.array_equal(k, q):
                return None
            total += np.bincount(k, minlength=len(total))
        counts.append(total)
    d = np.cumsum(counts[0][:-1]) / n - np.cumsum(counts[1][:-1]) / m
    return float(np.abs(d).sum())


@dataclass(frozen=True)
class _Part:
    """Values of both sides whose integral of |D| is wanted from the smallest of them to ``end`` (at or
    above the largest): D is ``start`` below the smallest and moves by +step_a at each value of ``a``,
    -step_b at each value of ``b``."""

    a: FloatArray
    b: FloatArray
    step_a: float
    step_b: float
    start: float
    end: float

    def below(self, cut: float) -> float:
        """The smallest value, or ``cut`` if there is none."""
        return min([cut, *(float(np.min(v)) for v in (self.a, self.b) if len(v))])


def _integral(part: _Part, depth: int) -> float:
    a, b, step_a, step_b = part.a, part.b, part.step_a, part.step_b
    if len(a) + len(b) <= _SORT_MAX_VALUES or depth >= _MAX_DEPTH:
        return _sorted_integral(part)
    smallest = part.below(math.inf)
    stride = max(1, (len(a) + len(b)) // _GRID_SAMPLE)
    low, high = (float(q) for q in np.quantile(np.concatenate((a[::stride], b[::stride])), [0.001, 0.999]))
    if not high > low:
        low, high = smallest, max(float(np.max(v)) for v in (a, b) if len(v))
        if not high > low:  # one value on both sides: D jumps once, at it
            return abs(part.start + step_a * len(a) - step_b * len(b)) * (part.end - low)
    size = int(min(_GRID_MAX, 2 ** max(10, int(math.log2((len(a) + len(b)) / 8)))))
    scale = size / (high - low)
    # Positions: bucket j (1..size) holds the values at positions in [j, j + 1); 0 and size + 1 take
    # what lies below low and from high on.
    grid = _Grid(low, scale, size)
    ca, sum_a = grid.sums(a)
    cb, sum_b = grid.sums(b)
    # D at the lower edge of each bucket, from whole counts (a cumulative sum of steps would drift)
    before = part.start + (np.cumsum(ca) - ca) * step_a - (np.cumsum(cb) - cb) * step_b
    inner = slice(1, size + 1)
    j = np.arange(1, size + 1, dtype=np.float64)
    # The integral of D over bucket j in positions: D_before + step_a sum(j + 1 - q) - step_b sum(...)
    signed = (
        before[inner]
        + step_a * ((j + 1) * ca[inner] - sum_a[inner])
        - step_b * ((j + 1) * cb[inner] - sum_b[inner])
    )
    d = before[inner]
    crossing = (d - cb[inner] * step_b < 0) & (d + ca[inner] * step_a > 0)
    total = float(np.abs(signed[~crossing]).sum())
    # A second pass picks the values of the crossing buckets and those outside the grid.
    wanted = np.zeros(size + 2, dtype=bool)
    wanted[1:-1] = crossing
    wanted[0] = wanted[-1] = True
    qa, ids_a, outside_a = grid.pick(a, wanted)
    qb, ids_b, outside_b = grid.pick(b, wanted)
    if crossing.any():
        total += _resolve((qa, ids_a), (qb, ids_b), crossing=crossing, before=before, jumps=(step_a, step_b))
    total /= scale  # positions back to values
    # Below the grid: the same problem on fewer values, up to the grid's low edge.
    if ca[0] or cb[0]:
        lower = _Part(outside_a[ids_a == 0], outside_b[ids_b == 0], step_a, step_b, part.start, low)
        total += _integral(lower, depth + 1)
    else:  # nothing below low: the grid's first bucket starts at low, the integral at the smallest value
        total -= abs(part.start) * (smallest - low)
    # From high on: D is before[-1] up to the smallest value there, then the same problem again.
    rest = float(before[-1])
    upper = _Part(outside_a[ids_a == size + 1], outside_b[ids_b == size + 1], step_a, step_b, rest, part.end)
    total += abs(rest) * (upper.below(part.end) - high)
    if ca[-1] or cb[-1]:
        total += _integral(upper, depth + 1)
    return total


#: Values are placed on the grid this many at a time, in buffers reused from block to block: a block
#: stays in cache, and no temporary as large as a column is allocated (fresh pages cost more here than
#: the arithmetic).
_BLOCK = 1 << 16


@dataclass(frozen=True)
class _Grid:
    """Buckets 1..size of equal width over [low, high); 0 and size + 1 take what lies outside."""

    low: float
    scale: float  # buckets per unit of value
    size: int

    def blocks(self, values: FloatArray) -> Iterator[tuple[FloatArray, FloatArray, NDArray[np.intp]]]:
        """Per block of values: the values, their positions (1 + (value - low) * scale, clipped to
        [0, size + 1]) and their buckets (the positions' integer parts)."""
        positions = np.empty(min(_BLOCK, len(values)))
        buckets = np.empty(len(positions), dtype=np.intp)
        for first in range(0, len(values), _BLOCK):
            block = values[first : first + _BLOCK]
            q, k = positions[: len(block)], buckets[: len(block)]
            np.subtract(block, self.low, out=q)
            with np.errstate(over="ignore"):  # +-1e308 * scale: infinite, then clipped
                q *= self.scale
            q += 1.0
            # every step is monotone, so the order of the values is kept; clipping first keeps huge
            # values from overflowing the cast, which then truncates non-negative numbers (floors them)
            np.clip(q, 0.0, float(self.size + 1), out=q)
            k[...] = q
            yield block, q, k

    def sums(self, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per bucket: how many values, and the sum of their positions."""
        counts = np.zeros(self.size + 2)
        sums = np.zeros(self.size + 2)
        for _, q, k in self.blocks(values):
            counts += np.bincount(k, minlength=self.size + 2)
            sums += np.bincount(k, weights=q, minlength=self.size + 2)
        return counts, sums

    def pick(
        self, values: FloatArray, wanted: NDArray[np.bool_]
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """The positions, buckets and values of the values in the ``wanted`` buckets."""
        picked: list[tuple[FloatArray, NDArray[np.intp], FloatArray]] = []
        for block, q, k in self.blocks(values):
            take = wanted[k]
            picked.append((q[take], k[take], block[take]))
        if not picked:
            return np.empty(0), np.empty(0, dtype=np.intp), np.empty(0)
        q_all, k_all, v_all = (np.concatenate(parts) for parts in zip(*picked, strict=True))
        return q_all, k_all, v_all


#: Each crossing bucket is cut again into this many cells before any value is sorted.
_SUBDIVISIONS = 64


def _resolve(
    a: tuple[FloatArray, NDArray[np.intp]],
    b: tuple[FloatArray, NDArray[np.intp]],
    *,
    crossing: NDArray[np.bool_],
    before: FloatArray,
    jumps: tuple[float, float],
) -> float:
    """The integral of |D| (in positions) over the inner buckets flagged ``crossing``.

    A skewed column puts a hundred values in the buckets of its mode: those buckets are cut into finer
    cells, integrated from their sums like the buckets, and only the cells where D still changes sign
    are resolved value by value.
    """
    (qa, ids_a), (qb, ids_b), (step_a, step_b) = a, b, jumps
    flag = np.zeros(len(before), dtype=bool)
    flag[1:-1] = crossing
    take_a, take_b = flag[ids_a], flag[ids_b]  # the picked values include those outside the grid
    positions = np.concatenate((qa[take_a], qb[take_b]))
    owner = np.concatenate((ids_a[take_a], ids_b[take_b]))
    count_a = int(np.count_nonzero(take_a))
    steps = np.concatenate((np.full(count_a, step_a), np.full(len(positions) - count_a, -step_b)))
    buckets = np.flatnonzero(flag)
    rank = np.zeros(len(before), dtype=np.intp)
    rank[buckets] = np.arange(len(buckets))
    cuts = _SUBDIVISIONS
    local = (positions - owner) * cuts  # in cells, from the bucket's lower edge: [0, cuts)
    slot = np.minimum(local.astype(np.intp), cuts - 1)
    local -= slot  # now from the cell's lower edge, in cells: [0, 1)
    cell = rank[owner] * cuts + slot
    size = len(buckets) * cuts
    up = np.bincount(cell[:count_a], minlength=size) * step_a
    down = np.bincount(cell[count_a:], minlength=size) * step_b
    net = up - down
    moved = np.bincount(cell, weights=steps * local, minlength=size)
    # D at each cell's lower edge: D below its bucket plus the cells before it in the bucket
    grid = net.reshape(len(buckets), cuts)
    start = (before[buckets][:, None] + (np.cumsum(grid, axis=1) - grid)).ravel()
    # The integral of D over a cell, in cells: start + sum of steps * (1 - local)
    signed = start + net - moved
    crossing_cells = (start - down < 0) & (start + up > 0)
    total = float(np.abs(signed[~crossing_cells]).sum())
    if crossing_cells.any():
        keep = crossing_cells[cell]
        total += _cells(local[keep], steps[keep], cell[keep], start, net)
    return total / cuts


def _cells(
    local: FloatArray, steps: FloatArray, cell: NDArray[np.intp], start: FloatArray, net: FloatArray
) -> float:
    """The integral of |D| over the cells (unit width) holding these values, value by value: a value
    sits at ``local`` in [0, 1) of its cell, D is ``start[cell]`` below the cell's first value and
    ``start + net`` after its last. A cell holding one distinct value needs no sort."""
    some = np.zeros(len(start))
    some[cell] = local
    mixed = np.zeros(len(start), dtype=bool)
    mixed[cell[local != some[cell]]] = True
    single = np.zeros(len(start), dtype=bool)
    single[cell] = True
    single = np.flatnonzero(single & ~mixed)
    value = some[single]
    total = float(
        np.sum(np.abs(start[single]) * value) + np.sum(np.abs(start[single] + net[single]) * (1.0 - value))
    )
    if not mixed.any():
        return total
    keep = mixed[cell]
    key = cell[keep] + local[keep]  # cells are ordered like positions: one sort groups them too
    order = np.argsort(key)
    key, steps = key[order], steps[keep][order]
    owner = cell[keep][order]
    local = key - owner
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    last = np.r_[first[1:], len(key)] - 1
    runs = last - first + 1
    cumulative = np.cumsum(steps)
    # D after each value: D below its cell plus the steps of its cell so far
    d = np.repeat(start[owner[first]] - (cumulative[first] - steps[first]), runs) + cumulative
    same = owner[1:] == owner[:-1]
    within = float(np.sum(np.abs(d[:-1][same]) * np.diff(local)[same]))
    heads = float(np.sum(np.abs(start[owner[first]]) * local[first]))
    tails = float(np.sum(np.abs(d[last]) * (1.0 - local[last])))
    return total + within + heads + tails


def _sorted_integral(part: _Part) -> float:
    values = np.concatenate((part.a, part.b))
    if not len(values):
        return 0.0
    steps = np.concatenate((np.full(len(part.a), part.step_a), np.full(len(part.b), -part.step_b)))
    order = np.argsort(values, kind="stable")
    values, steps = values[order], steps[order]
    d = part.start + np.cumsum(steps)
    widths = np.diff(np.append(values, part.end))
    return float(np.sum(np.abs(d) * widths))
