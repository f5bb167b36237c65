"""Data and prediction drift between a reference and a current window, column by column.

The test per column follows Evidently's defaults (0.7, ``DataDriftPreset``): with at most 1000 reference
values, a p-value test (KS for numbers with more than 5 distinct values, else chi-squared, or a
two-proportion z-test for at most 2 values; drift at p < 0.05); above that, an effect size (Wasserstein
distance over the reference's std for numbers with more than 5 distinct values, else Jensen-Shannon
distance; drift at >= 0.1). The dataset drifts when the (optionally importance-weighted) share of drifted
columns reaches 0.5. PSI is available per column (``tests={"col": "psi"}``).

Where Evidently's defaults alarm on noise or on nothing, we do otherwise, and say so in each result:

- **Effect and significance both.** A p-value test also needs an effect (KS statistic >= 0.05, or the
  category shares moved by a total variation >= 0.02), so a negligible shift in a million rows never
  alarms. A distance also needs significance (KS, or chi-squared of the 2 x K table, p < 0.05), because
  just above 1000 rows Jensen-Shannon over 50 categories exceeds 0.1 from sampling noise alone (86% of
  null splits) and the normalised Wasserstein distance of heavy-tailed columns does in 5-18%. The
  numeric check runs while it can matter: when the smaller side has at most 50k values (the null noise
  of the normalised distance shrinks as 1/sqrt(n): at 50k rows its 99th percentile was below 0.05 for
  lognormal and Pareto(1.5) columns, 0.10 for Pareto(1.1), whose mean is barely finite).
- **Chi-squared** is the test of homogeneity of the two samples (Evidently tests current against
  reference frequencies and answers p = 0 when a category is absent from the reference).
- **No verdict on a small window**: fewer than ``min_rows`` rows (or present values) is
  ``insufficient_data``, never drifted or not.
- **Defined scores**: a constant column, a category never seen, a column missing on one side or both
  gets a finite score and a reason, never NaN.
- **Missing values**: a rise of the missing share by >= 0.05 that a z-test finds significant is a
  ``missing_surge``, and the column counts as drifted (Evidently drops missing values and sees nothing).

Speed: one column of each side at a time (threads over columns). Up to 50k rows a side is sorted once
and the KS statistic, the Wasserstein distance, counts and histograms all read that sort; above, nothing
is sorted: the exact Wasserstein distance comes from bucket counts and sums
(:func:`~mlcycle.monitoring.statistics.wasserstein_unsorted`), categories are counted by Arrow when
they are Arrow strings.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlcycle.monitoring import statistics as st
from mlcycle.monitoring.profile import (
    CategoricalSide,
    ColumnKind,
    NumericSide,
    Profile,
    Side,
    Summary,
    profile,
    side,
    summarize,
)
from mlcycle.monitoring.sources import Columns, columns_of
from mlcycle.monitoring.statistics import wasserstein_unsorted

TestName = Literal[
    "ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi", "missing", "presence", "none"
]
P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
Status = Literal["ok", "insufficient_data"]


@dataclass(frozen=True)
class DriftOptions:
    """How drift is decided; the defaults are Evidently's, plus the guards above."""

    drift_share: float = 0.5
    min_rows: int = 30
    small_sample_rows: int = 1000  # Evidently's switch from p-value tests to distances
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    tests: Mapping[str, str] = field(default_factory=dict)  # a test forced per column
    weights: Mapping[str, float] | None = None  # importance per column for the drifted share
    prediction: str | None = None  # the prediction column: compared, reported apart
    significance_alpha: float = 0.05
    significance_max_rows: int = 50_000
    min_ks_statistic: float = 0.05
    min_share_shift: float = 0.02
    missing_surge: float = 0.05
    histogram_bins: int = 20
    histogram_categories: int = 20
    # Threads over columns (None: the CPUs this process may use, at most 4). One by default: a monitor
    # Lambda has one vCPU, and on shared cores threads measured slower (2.4 s against 1.3 s at 1M rows
    # with the load at 3-4 on 2 cores), though 1.5x faster on idle ones.
    workers: int | None = 1

    def threshold(self, test: str) -> float:
        return float(self.thresholds.get(test, DEFAULT_THRESHOLDS.get(test, 0.0)))


@dataclass(frozen=True)
class Histogram:
    """Shares of both sides on shared bins: numeric ``edges`` (n+1) or categorical ``labels`` (n)."""

    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    labels: list[str] | None = None


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: ColumnKind
    status: Status
    test: TestName
    score: float | None  # the test's statistic: a p-value or a distance (None without a verdict)
    threshold: float | None
    p_value: float | None  # the p-value of the test, or of the significance check of a distance
    drifted: bool | None
    reason: str
    reference_rows: int
    current_rows: int
    reference_missing_share: float
    current_missing_share: float
    missing_surge: bool = False
    current_invalid_share: float = 0.0  # values of a numeric column that were not numbers
    unseen_categories: list[str] = field(default_factory=list)
    unseen_share: float = 0.0
    histogram: Histogram | None = None
    reference_summary: Summary | None = None
    current_summary: Summary | None = None


@dataclass(frozen=True)
class DatasetDrift:
    status: Status
    drifted: bool | None
    share: float | None  # weighted share of drifted columns among those with a verdict
    threshold: float
    drifted_columns: list[str]
    columns_with_verdict: int
    reference_rows: int
    current_rows: int


@dataclass(frozen=True)
class DriftReport:
    dataset: DatasetDrift
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None = None

    def to_dict(self, *, summaries: bool = False) -> dict[str, Any]:
        """Plain JSON types; summaries (used by statistics.json and the HTML report) only on request."""
        data = asdict(self)
        if not summaries:
            for column in [*data["columns"], *([data["prediction"]] if data["prediction"] else [])]:
                column.pop("reference_summary", None)
                column.pop("current_summary", None)
        return data

    def to_json(self, *, summaries: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(summaries=summaries), indent=indent, allow_nan=False)

    def column(self, name: str) -> ColumnDrift:
        for result in [*self.columns, *([self.prediction] if self.prediction else [])]:
            if result.column == name:
                return result
        raise KeyError(name)


# --- the comparison ----------------------------------------------------------------------------------


def compare(
    reference: pd.DataFrame | Columns | Profile,
    current: pd.DataFrame | Columns,
    schema: Mapping[str, ColumnKind],
    options: DriftOptions | None = None,
) -> DriftReport:
    """Drift of each schema column (and of ``options.prediction``) from ``reference`` to ``current``.

    ``reference`` may be a :class:`Profile` made once (the baseline sorted at training time). Frames,
    or :class:`~mlcycle.monitoring.sources.ParquetColumns` read column by column, are prepared one
    column at a time, so at most ``workers`` columns of each side are held at once.
    """
    options = options or DriftOptions()
    window = columns_of(current)
    base = reference if isinstance(reference, Profile) else columns_of(reference)
    kinds = dict(schema)
    if options.prediction and options.prediction not in kinds:
        kinds[options.prediction] = _kind_of(window, options.prediction)
    reference_rows, current_rows = base.rows, window.rows
    enough = min(reference_rows, current_rows) >= options.min_rows
    # Sorted sides while the significance check needs them; above, distances come from buckets.
    sort = min(reference_rows, current_rows) <= options.significance_max_rows

    def one(name: str, kind: ColumnKind) -> ColumnDrift:
        ref_side = _reference_side(base, name, kind, sort=sort)
        cur_side = side(window.column(name), kind, sort=sort)
        return compare_sides(name, kind, ref_side, cur_side, options, enough=enough)

    workers = options.workers if options.workers is not None else _available_cpus()
    if workers > 1 and len(kinds) > 1:
        # Columns are independent and NumPy releases the GIL; `workers` columns are held at a time.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(zip(kinds, pool.map(one, kinds, kinds.values()), strict=True))
    else:
        results = {name: one(name, kind) for name, kind in kinds.items()}
    prediction = results.pop(options.prediction) if options.prediction else None
    dataset = _dataset_drift(list(results.values()), options, reference_rows, current_rows, enough=enough)
    return DriftReport(dataset=dataset, columns=list(results.values()), prediction=prediction)


def _available_cpus() -> int:
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return min(4, os.cpu_count() or 1)


def _kind_of(window: Columns, name: str) -> ColumnKind:
    if name not in window.names:
        raise KeyError(f"the prediction column {name!r} is not in the current data")
    dtype = window.column(name).dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    return "numeric" if numeric else "categorical"


def _reference_side(reference: Columns | Profile, name: str, kind: ColumnKind, *, sort: bool) -> Side:
    if isinstance(reference, Profile):
        if name in reference.sides and reference.schema.get(name) == kind:
            return reference.sides[name]
        raise KeyError(f"the reference profile has no {kind} column {name!r}")
    return side(reference.column(name), kind, sort=sort)


def compare_sides(
    name: str, kind: ColumnKind, ref: Side, cur: Side, options: DriftOptions, *, enough: bool = True
) -> ColumnDrift:
    """One column's verdict from its two prepared sides."""
    base = _Base.of(name, kind, ref, cur, options)
    surge = enough and _missing_surge(ref, cur, options)
    if not enough:
        return base.result(None, f"fewer than {options.min_rows} rows")
    if ref.present == 0 or cur.present == 0:
        return base.result(_presence(ref, cur), surge=surge)
    if min(ref.present, cur.present) < options.min_rows:
        if surge:
            return base.result(_Outcome("missing", _missing_rise(ref, cur), None, None, True, ""), surge=True)
        return base.result(None, f"fewer than {options.min_rows} present values")
    if isinstance(ref, NumericSide) and isinstance(cur, NumericSide):
        outcome = _numeric(ref, cur, options, options.tests.get(name))
    elif isinstance(ref, CategoricalSide) and isinstance(cur, CategoricalSide):
        outcome = _categorical(ref, cur, options, options.tests.get(name))
    else:
        raise TypeError(f"column {name!r}: the two sides are of different kinds")
    return base.result(outcome, surge=surge)


@dataclass(frozen=True)
class _Outcome:
    test: TestName
    score: float
    threshold: float | None
    p_value: float | None
    drifted: bool
    reason: str


@dataclass(frozen=True)
class _Base:
    """What every column result carries, whatever the verdict."""

    name: str
    kind: ColumnKind
    ref: Side
    cur: Side
    histogram: Histogram | None
    unseen: list[str]
    unseen_share: float

    @classmethod
    def of(cls, name: str, kind: ColumnKind, ref: Side, cur: Side, options: DriftOptions) -> _Base:
        unseen, unseen_share = _unseen(ref, cur)
        return cls(name, kind, ref, cur, _histogram(ref, cur, options), unseen, unseen_share)

    def result(self, outcome: _Outcome | None, why_not: str = "", *, surge: bool = False) -> ColumnDrift:
        """The column's result: ``outcome``'s verdict (a missing-value surge makes it drifted), or no
        verdict (``insufficient_data``) for the reason ``why_not``."""
        reason = outcome.reason if outcome else why_not
        if surge:
            reason = "missing values surged" + (
                f"; {reason}" if reason and outcome and outcome.drifted else ""
            )
        return ColumnDrift(
            column=self.name,
            kind=self.kind,
            status="ok" if outcome else "insufficient_data",
            test=outcome.test if outcome else "none",
            score=_finite(outcome.score) if outcome else None,
            threshold=outcome.threshold if outcome else None,
            p_value=_finite(outcome.p_value) if outcome else None,
            drifted=bool(outcome.drifted or surge) if outcome else None,
            reason=reason,
            reference_rows=self.ref.rows,
            current_rows=self.cur.rows,
            reference_missing_share=_share(self.ref.missing, self.ref.rows),
            current_missing_share=_share(self.cur.missing, self.cur.rows),
            missing_surge=surge,
            current_invalid_share=_share(self.cur.invalid, self.cur.rows)
            if isinstance(self.cur, NumericSide)
            else 0.0,
            unseen_categories=self.unseen[:20],
            unseen_share=self.unseen_share,
            histogram=self.histogram,
            reference_summary=summarize(self.ref),
            current_summary=summarize(self.cur),
        )


def _finite(value: float | None) -> float | None:
    # Every path defines its score; should one still come out NaN, the report says "no number" (null)
    # rather than failing the window or writing NaN, which JSON readers reject.
    if value is None or math.isnan(value):
        return None
    return float(min(max(value, -1e300), 1e300))  # JSON has no infinity


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _presence(ref: Side, cur: Side) -> _Outcome:
    """A side without any present value: nothing to compare, but a defined answer."""
    if ref.present == 0 and cur.present == 0:
        return _Outcome("none", 0.0, None, None, False, "no present values on either side")
    if cur.present == 0:
        return _Outcome("missing", _missing_rise(ref, cur), None, None, True, "all values missing")
    return _Outcome("presence", 1.0, None, None, True, "values appeared where the reference had none")


def _missing_rise(ref: Side, cur: Side) -> float:
    return _share(cur.missing, cur.rows) - _share(ref.missing, ref.rows)


def _missing_surge(ref: Side, cur: Side, options: DriftOptions) -> bool:
    if not ref.rows or not cur.rows or _missing_rise(ref, cur) < options.missing_surge:
        return False
    test = st.proportions_z_test(cur.missing, cur.rows, ref.missing, ref.rows)
    return test.p_value < options.significance_alpha


# --- numeric columns ---------------------------------------------------------------------------------


def _numeric(ref: NumericSide, cur: NumericSide, options: DriftOptions, forced: str | None) -> _Outcome:
    distinct = _distinct_values(ref, cur, limit=5)
    small = ref.present <= options.small_sample_rows
    test = forced or _default_test(small, distinct)
    if test in ("chisquare", "z", "jensenshannon", "psi"):
        if distinct is None:  # a binned test on a continuous column: Evidently's Sturges bins of both
            ref_counts, cur_counts = _sturges_counts(ref, cur)
        else:
            ref_counts, cur_counts = ref.counts_of(distinct), cur.counts_of(distinct)
        return _discrete(test, ref_counts, cur_counts, options)
    if test == "ks":
        result = st.ks_2samp_sorted(ref.sorted_values(), cur.sorted_values())
        return _p_value_outcome(
            "ks",
            result,
            options,
            effect=result.statistic,
            min_effect=options.min_ks_statistic,
            effect_name="KS",
        )
    if test != "wasserstein":
        raise ValueError(f"test {test!r} does not apply to numeric columns")
    scale = max(float(np.std(ref.values)), 0.001)
    if ref.is_sorted and cur.is_sorted:
        distance = st.wasserstein_sorted(ref.values, cur.values) / scale
    else:
        distance = wasserstein_unsorted(ref.values, cur.values) / scale
    p_value = None
    if ref.is_sorted and cur.is_sorted and min(ref.present, cur.present) <= options.significance_max_rows:
        p_value = st.ks_2samp_sorted(ref.values, cur.values).p_value
    return _distance_outcome("wasserstein", distance, p_value, options, "KS")


def _default_test(small: bool, distinct: FloatArrayOrNone) -> str:
    if distinct is None:
        return "ks" if small else "wasserstein"
    if small:
        return "chisquare" if len(distinct) > 2 else "z"
    return "jensenshannon"


FloatArrayOrNone = st.FloatArray | None


def _distinct_values(ref: NumericSide, cur: NumericSide, limit: int) -> FloatArrayOrNone:
    """The distinct values of both sides together if at most ``limit``, else None."""
    ref_values = ref.distinct(limit + 1)
    cur_values = cur.distinct(limit + 1) if ref_values is not None else None
    if ref_values is None or cur_values is None:
        return None
    union = np.union1d(ref_values, cur_values)
    return union if len(union) <= limit else None


def _sturges_counts(ref: NumericSide, cur: NumericSide) -> tuple[st.FloatArray, st.FloatArray]:
    low = min(ref.minimum, cur.minimum)
    high = max(ref.maximum, cur.maximum)
    bins = math.ceil(math.log2(ref.present + cur.present)) + 1
    edges = np.linspace(low, high, bins + 1) if high > low else np.array([low - 0.5, high + 0.5])
    return ref.histogram(edges), cur.histogram(edges)


# --- categorical columns -----------------------------------------------------------------------------


def _categorical(
    ref: CategoricalSide, cur: CategoricalSide, options: DriftOptions, forced: str | None
) -> _Outcome:
    ref_counts, cur_counts = _aligned_counts(ref, cur)
    seen = (ref_counts + cur_counts) > 0
    ref_counts, cur_counts = ref_counts[seen], cur_counts[seen]
    small = ref.present <= options.small_sample_rows
    test = forced or ("jensenshannon" if not small else "chisquare" if len(ref_counts) > 2 else "z")
    if test not in ("chisquare", "z", "jensenshannon", "psi"):
        raise ValueError(f"test {test!r} does not apply to categorical columns")
    return _discrete(test, ref_counts, cur_counts, options)


def _aligned_counts(ref: CategoricalSide, cur: CategoricalSide) -> tuple[st.FloatArray, st.FloatArray]:
    """Counts of both sides over the union of categories (the reference's first, then new ones)."""
    positions = ref.categories.get_indexer(cur.categories)
    new = positions < 0
    ref_counts = np.concatenate((ref.counts, np.zeros(int(new.sum()))))
    cur_counts = np.zeros(len(ref_counts))
    cur_counts[positions[~new]] = cur.counts[~new]
    cur_counts[len(ref.counts) :] = cur.counts[new]
    return ref_counts, cur_counts


def _unseen(ref: Side, cur: Side) -> tuple[list[str], float]:
    if not isinstance(ref, CategoricalSide) or not isinstance(cur, CategoricalSide) or not ref.present:
        return [], 0.0
    new = (ref.categories.get_indexer(cur.categories) < 0) & (cur.counts > 0)
    order = np.argsort(-cur.counts[new], kind="stable")
    names = [str(v) for v in np.asarray(cur.categories[new])[order]]
    return names, _share(int(cur.counts[new].sum()), cur.present)


# --- verdicts ----------------------------------------------------------------------------------------


def _discrete(
    test: str, ref_counts: st.FloatArray, cur_counts: st.FloatArray, options: DriftOptions
) -> _Outcome:
    """A test on counts per category (or per distinct value, or per bin)."""
    shift = st.total_variation(ref_counts, cur_counts)
    if test == "z":
        if len(ref_counts) < 2:  # one value on both sides
            return _Outcome("z", 1.0, options.threshold("z"), 1.0, False, "a single value on both sides")
        # Evidently's successes: values other than the first (sorted) one.
        result = st.proportions_z_test(
            ref_counts[1:].sum(), ref_counts.sum(), cur_counts[1:].sum(), cur_counts.sum()
        )
        return _p_value_outcome("z", result, options, effect=shift, min_effect=options.min_share_shift)
    if test == "chisquare":
        result = st.chi2_homogeneity(ref_counts, cur_counts)
        return _p_value_outcome(
            "chisquare", result, options, effect=shift, min_effect=options.min_share_shift
        )
    significance = st.chi2_homogeneity(ref_counts, cur_counts).p_value
    if test == "jensenshannon":
        return _distance_outcome(
            "jensenshannon", st.jensen_shannon(ref_counts, cur_counts), significance, options, "chi-squared"
        )
    if test == "psi":
        value = st.psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())
        return _distance_outcome("psi", value, significance, options, "chi-squared")
    raise ValueError(f"unknown test {test!r}")


def _p_value_outcome(
    test: TestName,
    result: st.TestResult,
    options: DriftOptions,
    *,
    effect: float,
    min_effect: float,
    effect_name: str = "share shift",
) -> _Outcome:
    threshold = options.threshold(test)
    # Evidently: KS drifts at p <= threshold, chi-squared and z at p < threshold.
    significant = result.p_value <= threshold if test == "ks" else result.p_value < threshold
    drifted = significant and effect >= min_effect
    if drifted:
        reason = f"p = {result.p_value:.3g} below {threshold:g}, {effect_name} {effect:.3g}"
    elif significant:
        reason = f"significant (p = {result.p_value:.3g}) but {effect_name} {effect:.3g} below {min_effect:g}"
    else:
        reason = f"p = {result.p_value:.3g} not below {threshold:g}"
    return _Outcome(test, result.p_value, threshold, result.p_value, drifted, reason)


def _distance_outcome(
    test: TestName, distance: float, p_value: float | None, options: DriftOptions, check: str
) -> _Outcome:
    threshold = options.threshold(test)
    large = distance >= threshold
    significant = p_value is None or p_value < options.significance_alpha
    drifted = large and significant
    if drifted:
        reason = f"distance {distance:.3g} >= {threshold:g}"
    elif large:
        reason = f"distance {distance:.3g} >= {threshold:g} but not significant ({check} p = {p_value:.3g})"
    else:
        reason = f"distance {distance:.3g} below {threshold:g}"
    return _Outcome(test, distance, threshold, p_value, drifted, reason)


# --- histograms and the dataset ----------------------------------------------------------------------


def _histogram(ref: Side, cur: Side, options: DriftOptions) -> Histogram | None:
    if isinstance(ref, CategoricalSide) and isinstance(cur, CategoricalSide):
        ref_counts, cur_counts = _aligned_counts(ref, cur)
        labels = list(ref.categories) + [c for c in cur.categories if c not in ref.categories]
        order = np.argsort(-(ref_counts + cur_counts), kind="stable")[: options.histogram_categories]
        rest_ref = ref_counts.sum() - ref_counts[order].sum()
        rest_cur = cur_counts.sum() - cur_counts[order].sum()
        names = [str(labels[i]) for i in order] + (["(other)"] if rest_ref or rest_cur else [])
        r = [*ref_counts[order].tolist(), *([rest_ref] if rest_ref or rest_cur else [])]
        c = [*cur_counts[order].tolist(), *([rest_cur] if rest_ref or rest_cur else [])]
        return Histogram(reference=_shares(r), current=_shares(c), labels=names)
    if (
        not isinstance(ref, NumericSide)
        or not isinstance(cur, NumericSide)
        or not (ref.present or cur.present)
    ):
        return None
    ends = [v for s in (ref, cur) if s.present for v in (s.minimum, s.maximum)]
    low, high = min(ends), max(ends)
    edges = (
        np.linspace(low, high, options.histogram_bins + 1)
        if high > low
        else np.array([low - 0.5, high + 0.5])
    )
    return Histogram(
        reference=_shares(ref.histogram(edges, exact=False).tolist()),
        current=_shares(cur.histogram(edges, exact=False).tolist()),
        edges=edges.tolist(),
    )


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _dataset_drift(
    columns: list[ColumnDrift], options: DriftOptions, reference_rows: int, current_rows: int, *, enough: bool
) -> DatasetDrift:
    judged = [c for c in columns if c.drifted is not None]
    weights = options.weights or {}
    total = sum(weights.get(c.column, 1.0) for c in judged)
    drifted = [c.column for c in judged if c.drifted]
    if not enough or not judged or total <= 0:
        return DatasetDrift(
            "insufficient_data",
            None,
            None,
            options.drift_share,
            drifted,
            len(judged),
            reference_rows,
            current_rows,
        )
    share = sum(weights.get(name, 1.0) for name in drifted) / total
    return DatasetDrift(
        status="ok",
        drifted=bool(share >= options.drift_share),
        share=share,
        threshold=options.drift_share,
        drifted_columns=drifted,
        columns_with_verdict=len(judged),
        reference_rows=reference_rows,
        current_rows=current_rows,
    )


__all__ = ["ColumnDrift", "DatasetDrift", "DriftOptions", "DriftReport", "Histogram", "compare", "profile"]
