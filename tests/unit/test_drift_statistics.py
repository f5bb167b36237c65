"""mlcycle.monitoring.statistics against SciPy: statistics and p-values to 1e-6 relative.

SciPy is a test dependency only: the monitoring package itself must not import it (nor scikit-learn),
which the last tests check.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from mlcycle.monitoring import distributions
from mlcycle.monitoring import statistics as S

RTOL = 1e-6
PACKAGE = Path(__file__).resolve().parents[2] / "mlcycle" / "monitoring"


def close(mine: float, scipy_value: float, rtol: float = RTOL) -> bool:
    # p-values below ~1e-300 are at the edge of float64 (SciPy itself returns 0 or a subnormal there)
    if scipy_value < 1e-300:
        return mine < 1e-290
    return math.isclose(mine, scipy_value, rel_tol=rtol, abs_tol=0.0)


def _sample_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261128)
    sizes = [(1, 1), (1, 4), (2, 3), (5, 5), (8, 13), (30, 30), (50, 71), (200, 150), (999, 1000)]
    sizes += [(1000, 3000), (10_000, 9_999), (700, 20_000), (12_000, 30_000), (150_000, 150_000)]
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for n1, n2 in sizes:
        for shift in (0.0, 0.1, 0.5, 2.0):
            a = rng.normal(size=n1)
            b = rng.normal(shift, 1.0 + shift / 2, size=n2)
            pairs.append((f"normal {n1}x{n2} shift {shift}", a, b))
        # ties: rounded values and small integer support
        pairs.append(
            (f"rounded {n1}x{n2}", np.round(rng.normal(size=n1), 1), np.round(rng.normal(size=n2), 1))
        )
        pairs.append(
            (f"poisson {n1}x{n2}", rng.poisson(2, n1).astype(float), rng.poisson(2.3, n2).astype(float))
        )
        pairs.append((f"lognormal {n1}x{n2}", rng.lognormal(0, 2, n1), rng.lognormal(0.2, 2, n2)))
    pairs.append(("constant same", np.full(40, 3.0), np.full(25, 3.0)))
    pairs.append(("constant different", np.full(40, 3.0), np.full(25, 4.0)))
    pairs.append(("constant vs spread", np.full(500, 0.0), rng.normal(size=300)))
    pairs.append(("identical", np.arange(100.0), np.arange(100.0)))
    pairs.append(("disjoint", np.arange(10.0), np.arange(10.0) + 100))
    return pairs


PAIRS = _sample_pairs()


@pytest.mark.parametrize(("name", "a", "b"), PAIRS, ids=[p[0] for p in PAIRS])
def test_ks_2samp_matches_scipy(name: str, a: np.ndarray, b: np.ndarray) -> None:
    mine = S.ks_2samp(a, b)
    theirs = stats.ks_2samp(a, b)
    assert close(mine.statistic, float(theirs.statistic), 1e-12)
    assert close(mine.p_value, float(theirs.pvalue)), (mine.p_value, theirs.pvalue)


@pytest.mark.parametrize(("name", "a", "b"), PAIRS, ids=[p[0] for p in PAIRS])
def test_wasserstein_matches_scipy(name: str, a: np.ndarray, b: np.ndarray) -> None:
    theirs = stats.wasserstein_distance(a, b)
    mine = S.wasserstein(a, b)
    assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    normalized = theirs / max(float(np.std(a)), 0.001)  # Evidently's wasserstein stattest
    assert S.normalized_wasserstein(a, b) == pytest.approx(normalized, rel=1e-9, abs=1e-12)


def test_ks_drops_nan_as_evidently_does() -> None:
    a = np.array([1.0, np.nan, 2.0, 3.0, 7.0])
    b = np.array([np.nan, 2.5, 9.0, 11.0])
    theirs = stats.ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)])
    assert close(S.ks_2samp(a, b).p_value, float(theirs.pvalue))


def test_ks_rejects_an_empty_sample() -> None:
    with pytest.raises(ValueError):
        S.ks_2samp([], [1.0])


@pytest.mark.parametrize("n", [1, 2, 5, 50, 140, 141, 999, 5_000, 50_000, 100_001, 400_000, 2_000_000])
def test_kolmogorov_sf_matches_kstwo_over_its_regions(n: int) -> None:
    points = 80 if n < 10_000 else 10  # SciPy takes ~0.5 s a point for large n
    for x in np.concatenate([np.geomspace(1e-4, 0.99, points), [0.5 / n, 1 / n, 1 - 1 / n]]):
        if not 0 < x < 1:
            continue
        assert close(distributions.kolmogorov_sf(n, float(x)), float(stats.kstwo.sf(x, n))), (n, x)


@pytest.mark.parametrize("n", [2, 10, 100, 1000, 100_000])
def test_smirnov_sf_matches_scipy_special(n: int) -> None:
    from scipy import special

    for x in np.linspace(0.001, 0.999, 60):
        assert close(distributions.smirnov_sf(n, float(x)), float(special.smirnov(n, x))), (n, x)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 49, 250, 5_000])
def test_chi2_sf_matches_scipy(df: int) -> None:
    for x in [1e-6, 0.01, 0.5, 1.0, df / 2, df - 1, df, df + 1, 1.5 * df, 3 * df, df + 300, 5e4]:
        assert close(distributions.chi2_sf(x, df), float(stats.chi2.sf(x, df))), (df, x)


def test_normal_sf_matches_scipy() -> None:
    for z in [-5.0, -1.0, 0.0, 0.3, 1.96, 5.0, 20.0, 37.0]:
        assert close(distributions.normal_sf(z), float(stats.norm.sf(z)))


def _count_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = []
    for k in (2, 3, 5, 12, 60):
        for n1, n2 in ((10, 15), (200, 180), (1000, 1000), (50_000, 20_000)):
            p = rng.dirichlet(np.ones(k))
            q = 0.8 * p + 0.2 * rng.dirichlet(np.ones(k))
            cases.append((rng.multinomial(n1, p).astype(float), rng.multinomial(n2, q).astype(float)))
    cases.append((np.array([10.0, 0, 5]), np.array([0.0, 7, 3])))  # a category each side lacks
    cases.append((np.array([30.0, 0]), np.array([30.0, 0])))  # one category seen only
    return cases


COUNTS = _count_cases()


@pytest.mark.parametrize(("a", "b"), COUNTS)
def test_chisquare_goodness_of_fit_matches_scipy(a: np.ndarray, b: np.ndarray) -> None:
    seen = a > 0  # expected counts must be positive for SciPy's statistic to be finite
    if seen.sum() < 2:
        return
    observed = b[seen] / b[seen].sum() * 100
    expected = a[seen] / a[seen].sum() * 100
    mine = S.chisquare(observed, expected)
    theirs = stats.chisquare(observed, expected)
    assert close(mine.statistic, float(theirs.statistic), 1e-9)
    assert close(mine.p_value, float(theirs.pvalue))


def test_chisquare_with_an_unexpected_category_is_infinite_not_nan() -> None:
    result = S.chisquare([5.0, 5.0], [10.0, 0.0])
    assert result.statistic == math.inf and result.p_value == 0.0


@pytest.mark.parametrize(("a", "b"), COUNTS)
def test_chi2_homogeneity_matches_chi2_contingency(a: np.ndarray, b: np.ndarray) -> None:
    seen = (a + b) > 0
    mine = S.chi2_homogeneity(a, b)
    if seen.sum() < 2:
        assert (mine.statistic, mine.p_value) == (0.0, 1.0)
        return
    theirs = stats.chi2_contingency(np.vstack([a[seen], b[seen]]), correction=False)
    assert close(mine.statistic, float(theirs.statistic), 1e-9)
    assert close(mine.p_value, float(theirs.pvalue))


@pytest.mark.parametrize(
    ("s1", "n1", "s2", "n2"),
    [(10, 100, 20, 100), (0, 50, 3, 60), (500, 1000, 520, 1000), (1, 3, 2, 3), (990, 1000, 600, 1000)],
)
def test_proportions_z_test_matches_the_pooled_formula_with_scipy_norm(
    s1: int, n1: int, s2: int, n2: int
) -> None:
    p1, p2, pooled = s1 / n1, s2 / n2, (s1 + s2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    mine = S.proportions_z_test(s1, n1, s2, n2)
    assert close(abs(mine.statistic), abs(z), 1e-12)
    assert close(mine.p_value, float(2 * stats.norm.sf(abs(z))))


def test_proportions_z_test_of_one_shared_value_is_no_evidence() -> None:
    assert S.proportions_z_test(0, 10, 0, 12) == S.TestResult(0.0, 1.0)
    assert S.proportions_z_test(10, 10, 12, 12) == S.TestResult(0.0, 1.0)


@pytest.mark.parametrize(("a", "b"), COUNTS)
@pytest.mark.parametrize("base", [None, 2.0])
def test_jensen_shannon_matches_scipy(a: np.ndarray, b: np.ndarray, base: float | None) -> None:
    theirs = float(distance.jensenshannon(a / a.sum(), b / b.sum(), base=base))
    assert S.jensen_shannon(a, b, base=base) == pytest.approx(theirs, rel=RTOL, abs=1e-12)


def test_psi_matches_evidentlys_formula() -> None:
    reference = np.array([0.5, 0.3, 0.2, 0.0])
    current = np.array([0.4, 0.3, 0.2, 0.1])
    filled_ref = np.array([0.5, 0.3, 0.2, 0.0001])
    expected = float(np.sum((filled_ref - current) * np.log(filled_ref / current)))
    assert S.psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert S.psi(current, current) == 0.0


def test_total_variation() -> None:
    assert S.total_variation([1, 1], [1, 1]) == 0.0
    assert S.total_variation([1, 0], [0, 1]) == 1.0
    assert S.total_variation([3, 1], [1, 1]) == pytest.approx(0.25)


# --- no SciPy, no scikit-learn in the package ---------------------------------------------------------


def test_the_monitoring_package_imports_neither_scipy_nor_sklearn() -> None:
    forbidden = {"scipy", "sklearn"}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"


def test_importing_and_running_the_monitoring_package_loads_no_scipy() -> None:
    probe = (
        "import sys, numpy as np\n"
        "import mlcycle.monitoring as m\n"
        "from mlcycle.monitoring import statistics as s\n"
        "s.ks_2samp(np.arange(50.0), np.arange(60.0) + 0.5)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('scipy', 'sklearn'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- the bucketed Wasserstein distance of large samples (no sort) --------------------------------------


def _large_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    n = 200_000
    return [
        ("normal null", rng.normal(size=n), rng.normal(size=n - 7)),
        ("normal shift", rng.normal(size=n), rng.normal(0.05, 1.2, size=n + 3)),
        ("integers", rng.integers(0, 500, n).astype(float), rng.integers(0, 500, n).astype(float)),
        ("rounded", np.round(rng.normal(size=n), 2), np.round(rng.normal(size=n), 2)),
        ("lognormal", rng.lognormal(0, 2, n), rng.lognormal(0.1, 2, n // 2)),
        ("pareto tail", rng.pareto(1.1, n), rng.pareto(1.1, n)),
        ("an outlier", np.r_[rng.normal(size=n), [1e12]], rng.normal(size=n)),
        ("far apart", rng.normal(size=n), rng.normal(1000, 1, size=n)),
        ("large offset", 1e6 + rng.normal(size=n), 1e6 + rng.normal(size=n)),
        ("a spike", np.r_[np.zeros(n), rng.normal(size=500)], np.r_[np.zeros(n - 9), rng.normal(size=900)]),
        ("signed zeros", np.r_[np.zeros(500), -np.zeros(500), rng.normal(size=n)], rng.normal(size=n)),
        ("tiny", np.array([1.0]), np.array([2.0, 3.0])),
        ("constant", np.full(1000, 3.0), np.r_[np.full(10, 3.0), [5.0]]),
    ]


LARGE = _large_pairs()


def _more_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Shapes the bucketed form meets in monitor windows: skewed modes (crossings cut into cells),
    integers (counted), rounded values (cells of one value), tails outside the grid."""
    rng = np.random.default_rng(12)
    n = 300_000
    return [
        ("lognormal null", rng.lognormal(0, 1, n), rng.lognormal(0, 1, n + 11)),
        ("integers shifted", rng.integers(0, 500, n).astype(float), rng.integers(15, 515, n).astype(float)),
        (
            "negative integers",
            rng.integers(-40, 40, n).astype(float),
            rng.integers(-41, 39, n // 3).astype(float),
        ),
        ("integers and a fraction", rng.integers(0, 50, n).astype(float), np.r_[rng.integers(0, 50, n), 0.5]),
        (
            "integers over a wide span",
            rng.integers(0, 10**7, n).astype(float),
            rng.integers(0, 10**7, n).astype(float),
        ),
        ("ties at 0.001", np.round(rng.lognormal(0, 1, n), 3), np.round(rng.lognormal(0, 1, n), 3)),
        (
            "both tails far",
            np.r_[rng.normal(size=n), rng.normal(-1e6, 1, 900)],
            np.r_[rng.normal(size=n), [3e7] * 500],
        ),
        ("current all above", rng.normal(size=n), rng.normal(50, 0.1, size=n // 2)),
        (
            "mixture",
            np.r_[rng.normal(size=n), np.zeros(n // 3)],
            np.r_[rng.normal(0.01, 1, n), np.zeros(n // 2)],
        ),
    ]


BUCKETED = LARGE + _more_pairs()


@pytest.mark.parametrize(("name", "a", "b"), BUCKETED, ids=[p[0] for p in BUCKETED])
def test_unsorted_wasserstein_matches_scipy(name: str, a: np.ndarray, b: np.ndarray) -> None:
    shuffled_a, shuffled_b = np.random.default_rng(3).permutation(a), np.random.default_rng(4).permutation(b)
    expected = stats.wasserstein_distance(a, b)
    assert S.wasserstein_unsorted(shuffled_a, shuffled_b) == pytest.approx(expected, rel=1e-9, abs=1e-12)
