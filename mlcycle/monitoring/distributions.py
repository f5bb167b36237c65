"""Tail probabilities the drift tests need, in NumPy and ``math`` only (no SciPy in monitor Lambdas).

Each function answers what the SciPy function named in its docstring answers, to about 1e-10 relative,
small tails included: a p-value of 1e-40 is computed as such, never as ``1 - 0.99999...``.

- :func:`chi2_sf`: ``scipy.stats.chi2.sf`` (regularized upper incomplete gamma, series or continued
  fraction in log space).
- :func:`normal_sf`: ``scipy.stats.norm.sf``.
- :func:`kolmogorov_sf`: ``scipy.stats.kstwo.sf``, the one-sample two-sided Kolmogorov distribution of
  ``D_n``, which ``ks_2samp`` uses asymptotically with ``n = round(n1 n2 / (n1 + n2))``. Like SciPy
  (Simard and L'Ecuyer, 2011) it picks per region: closed forms at the ends, Durbin's matrix (Marsaglia,
  Tsang and Wang, 2003), the one-sided Smirnov sum doubled, or the Pelz-Good expansion.
- :func:`ks_two_sample_exact_sf`: the exact null distribution of the two-sample statistic, as
  ``ks_2samp(method="exact")`` computes it (Hodges' lattice paths).
"""

from __future__ import annotations

import math

import numpy as np

_LOG_MIN = -708.3964185322641  # exp() of anything smaller is 0 in float64
_SQRT_2PI = math.sqrt(2 * math.pi)


# --- chi-squared and normal --------------------------------------------------------------------------


def chi2_sf(x: float, df: float) -> float:
    """P(X >= x) for X ~ chi-squared with ``df`` degrees of freedom."""
    if df <= 0 or math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    return _gamma_upper_regularized(df / 2.0, x / 2.0)


def _gamma_upper_regularized(a: float, x: float) -> float:
    # log of x^a e^-x / Gamma(a): the common factor of both expansions, kept in logs so that tails of
    # 1e-300 keep their digits.
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # Series for the lower function P; Q = 1 - P is not small here (x is left of the mode).
        term = total = 1.0 / a
        denominator = a
        for _ in range(100_000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return min(1.0, max(0.0, 1.0 - math.exp(log_prefactor) * total))
    # Continued fraction for Q (modified Lentz), converging fast right of the mode.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    fraction = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < 1e-16:
            break
    log_q = log_prefactor + math.log(fraction)
    return 0.0 if log_q < _LOG_MIN else min(1.0, math.exp(log_q))


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# --- the one-sample Kolmogorov distribution (ks_2samp's asymptotic p-value) --------------------------


def kolmogorov_sf(n: int, x: float) -> float:
    """P(D_n >= x) for the two-sided one-sample Kolmogorov-Smirnov statistic of ``n`` observations."""
    if x >= 1.0:
        return 0.0
    if x <= 0.0:
        return 1.0
    t = n * x
    if t <= 1.0:  # Ruben and Gambino: the exact CDF is n!/n^n (2t-1)^n
        if t <= 0.5:
            return 1.0
        log_cdf = _log_factorial_over_power(n) + n * math.log(2 * t - 1)
        return _clip(1.0 - math.exp(log_cdf))
    if t >= n - 1:
        return _clip(2 * (1.0 - x) ** n)
    if x >= 0.5:
        return _clip(2 * smirnov_sf(n, x))
    n_x_squared = t * x
    if n <= 140:
        if n_x_squared <= 4:
            return _clip(1.0 - _durbin_cdf(n, x))
        return _clip(2 * smirnov_sf(n, x))
    if n_x_squared >= 370.0:
        return 0.0
    if n_x_squared >= 2.2:
        return _clip(2 * smirnov_sf(n, x))
    if n <= 100_000 and n * x**1.5 <= 1.4:
        return _clip(1.0 - _durbin_cdf(n, x))
    return _clip(1.0 - _pelz_good_cdf(n, x))


def _clip(p: float) -> float:
    return min(1.0, max(0.0, p))


def _log_factorial_over_power(n: int) -> float:
    """log(n! / n^n)."""
    return math.lgamma(n + 1) - n * math.log(n)


def _durbin_cdf(n: int, d: float) -> float:
    """P(D_n < d) by Durbin's matrix method as Marsaglia, Tsang and Wang compute it."""
    k = math.ceil(n * d)
    h = k - n * d
    size = 2 * k - 1
    # H[r, c] = 1/(r - c + 1)! on and below the superdiagonal; the first column and the last row lose the
    # h-powers of the boundary, and the corner gets back (2h - 1)^m where 2h > 1.
    inverse_factorials = np.ones(size + 1)
    inverse_factorials[1:] = 1.0 / np.cumprod(np.arange(1, size + 1, dtype=float))
    offset = np.arange(size)[:, None] - np.arange(size)[None, :] + 1
    matrix = np.where(offset >= 0, inverse_factorials[np.clip(offset, 0, size)], 0.0)
    h_powers = h ** np.arange(1, size + 1)
    matrix[:, 0] -= h_powers * inverse_factorials[1:]
    matrix[-1, :] -= h_powers[::-1] * inverse_factorials[1:][::-1]
    matrix[-1, 0] += max(2 * h - 1, 0.0) ** size * inverse_factorials[size]
    power, exponent = _matrix_power_scaled(matrix, n, k - 1)
    # P = n!/n^n * (H^n)[k-1, k-1], with the exponent kept apart until the end.
    value = power[k - 1, k - 1]
    if value <= 0:
        return 0.0
    log_value = math.log(value) + exponent * math.log(2) + _log_factorial_over_power(n)
    return _clip(math.exp(log_value)) if log_value > _LOG_MIN else 0.0


def _matrix_power_scaled(matrix: np.ndarray, n: int, watch: int) -> tuple[np.ndarray, int]:
    """``matrix ** n`` as (mantissa matrix, binary exponent), rescaled so that nothing overflows."""
    result = np.eye(len(matrix))
    result_exponent = 0
    base_exponent = 0
    remaining = n
    while remaining:
        if remaining & 1:
            result = result @ matrix
            result_exponent += base_exponent
        remaining >>= 1
        if not remaining:
            break
        matrix = matrix @ matrix
        base_exponent *= 2
        scale = abs(matrix[watch, watch])
        if scale > 2.0**128:
            shift = math.frexp(scale)[1]
            matrix = np.ldexp(matrix, -shift)
            base_exponent += shift
    return result, result_exponent


def _pelz_good_cdf(n: int, x: float) -> float:
    """The Pelz-Good expansion of P(D_n <= x) in powers of 1/sqrt(n), for large n."""
    z = math.sqrt(n) * x
    z2, z3, z4, z6 = z * z, z**3, z**4, z**6
    log_q = -(math.pi**2) / 8 / z2
    if log_q < _LOG_MIN:
        return 0.0
    q = math.exp(log_q)
    pi2, pi4, pi6 = math.pi**2, math.pi**4, math.pi**6
    # Coefficients of the theta-function series of K0..K3 (odd m = 2k - 1), summed from the smallest term.
    max_k = math.ceil(16 * z / math.pi)
    k = np.arange(max_k, 0, -1)
    m2 = (2.0 * k - 1) ** 2
    q_powers = q ** ((2.0 * k - 1) ** 2 - 1)  # q^(m^2) / q, the factor q comes back below
    k0 = np.sum(q_powers)
    k1 = np.sum(q_powers * (pi2 / 4 * m2 - z2))
    k2 = np.sum(
        q_powers * (6 * z6 + 2 * z4 + (2 * z4 - 5 * z2) * pi2 / 4 * m2 + pi4 * (1 - 2 * z2) / 16 * m2**2)
    )
    k3 = np.sum(
        q_powers
        * (
            -30 * z6
            - 90 * z**8
            + pi2 * (135 * z4 - 96 * z6) / 4 * m2
            + pi4 * (-60 * z2 + 212 * z4) / 16 * m2**2
            + pi6 * (5 - 30 * z2) / 64 * m2**3
        )
    )
    terms = np.array([k0, k1, k2, k3]) * q * _SQRT_2PI / np.array([z, 6 * z4, 72 * z**7, 6480 * z**10])
    # The even-index series that K2 and K3 also carry.
    even = np.arange(max_k, 0, -1, dtype=float)
    even_q = math.exp(-pi2 / 2 / z2) ** (even**2)
    terms[2] += np.sum(even**2 * even_q) * pi2 * _SQRT_2PI / (-36 * z3)
    sqrt3z = math.sqrt(3) * z
    terms[3] += (
        np.sum((sqrt3z + math.pi * even) * (sqrt3z - math.pi * even) * even**2 * even_q)
        * pi2
        * _SQRT_2PI
        / (216 * z6)
    )
    terms /= np.power(float(n), np.arange(4) / 2.0)
    return float(np.sum(terms))


def smirnov_sf(n: int, x: float) -> float:
    """P(D_n^+ >= x), the one-sided statistic (``scipy.special.smirnov``), by the Birnbaum-Tingey sum."""
    if n == 1:
        return 1.0 - x
    if x <= 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    if x <= 1.0 / n:
        return _clip(1.0 - x * (1.0 + x) ** (n - 1))
    if -2 * n * x * x < _LOG_MIN - 38:
        return 0.0
    if x >= 1.0 - 1.0 / n:
        return (1.0 - x) ** n
    if n > 1_000_000:  # SciPy's approximation for very large n: exp(-(6nx + 1)^2 / 18n)
        return math.exp(-((6.0 * n * x + 1) ** 2) / 18.0 / n)
    # sf = x * sum_j C(n, j) (1 - x - j/n)^(n - j) (x + j/n)^(j - 1), every term positive, summed in logs.
    last = math.floor(n * (1.0 - x))
    j = np.arange(0, last + 1, dtype=float)
    j = j[(1.0 - x) - j / n > 0]
    log_binomial = np.concatenate(([0.0], np.cumsum(np.log((n - j[1:] + 1) / j[1:]))))
    log_terms = log_binomial + (n - j) * np.log1p(-(x + j / n)) + (j - 1) * np.log(x + j / n)
    peak = float(np.max(log_terms))
    return _clip(x * math.exp(peak) * float(np.sum(np.exp(log_terms - peak))))


# --- the exact two-sample distribution ---------------------------------------------------------------


def ks_two_sample_exact_sf(n1: int, n2: int, h: int) -> float:
    """P(D >= h / lcm(n1, n2)) under the null for samples of n1 and n2 values (no ties)."""
    if h <= 0:
        return 1.0
    if n1 == n2:
        return _equal_sizes_sf(n1, h)
    return _lattice_paths_sf(max(n1, n2), min(n1, n2), h)


def _equal_sizes_sf(n: int, h: int) -> float:
    """Equal sizes: 2 * sum_k (-1)^(k+1) C(2n, n - kh) / C(2n, n), evaluated as nested ratios.

    Each ratio A_k = C(2n, n-(k+1)h) / C(2n, n-kh) is a product of h factors below one, and the sum is
    A_0 (1 - A_1 (1 - A_2 (...))): no subtraction of large numbers.
    """
    ks = np.arange(n // h + 1)
    j = np.arange(h)
    numerators = n - ks[:, None] * h - j[None, :]
    ratios = np.prod(np.clip(numerators, 0, None) / (n + ks[:, None] * h + j[None, :] + 1.0), axis=1)
    nested = 0.0
    for ratio in ratios[::-1]:
        nested = ratio * (1.0 - nested)
    return float(2.0 * nested)  # not clipped: the caller treats a rounding excursion past 1 as SciPy does


def _lattice_paths_sf(m: int, n: int, h: int) -> float:
    """Share of the monotone lattice paths (0,0) -> (m,n) that leave the band |x/m - y/n| < h/lcm.

    q(i, j), the probability that a random path to (i, j) has left the band, is 1 outside the band and
    (i q(i-1, j) + j q(i, j-1)) / (i + j) inside (a path reaches (i, j) from the left with probability
    i/(i+j)). Every value is a weighted mean of values in [0, 1], so it is stable without rescaling, and
    all cells of one anti-diagonal depend only on the previous one: the loop runs over m + n diagonals
    with array operations along each (Viehmann's recursion for 1 - p, by wavefront).
    """
    g = math.gcd(m, n)
    mg, ng = m // g, n // g
    slope = mg + ng
    # q of the previous diagonal by i, shifted by one (slot i + 1), 1 outside the band: the band moves by
    # at most one cell per diagonal, so only its ends need resetting.
    q = np.ones(m + 3)
    q[1] = 0.0  # the origin
    index = np.arange(m + 2, dtype=np.float64)
    previous_low = previous_high = 0
    for s in range(1, m + n + 1):
        # Cells (i, s - i) inside the band: |ng*i - mg*(s - i)| < h, and inside the grid.
        low = max((mg * s - h) // slope + 1, s - n, 0)
        high = min(-((-(mg * s + h)) // slope) - 1, s, m)
        if low > high:
            return 1.0
        i = index[low : high + 1]
        values = (i * q[low : high + 1] + (s - i) * q[low + 1 : high + 2]) / s
        q[previous_low + 1 : low + 1] = 1.0
        q[high + 2 : previous_high + 2] = 1.0
        q[low + 1 : high + 2] = values
        previous_low, previous_high = low, high
    return _clip(float(q[m + 1]))
