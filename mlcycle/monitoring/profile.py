"""One side of a drift comparison, prepared once: sorted values or category counts, plus missing counts.

A numeric column becomes its present values sorted (NaN and +-inf count as missing, as Evidently drops
them): every statistic of the comparison (KS, Wasserstein, unique values, histograms, quantiles) reads
that one sort. A categorical column becomes its categories (as strings, so that 1 and "1" from two file
readers meet) with their counts. A reference can be profiled once (at training time, or once per
monitor cold start) and compared with many windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.monitoring.statistics import FloatArray

BLOCK = 1 << 16  # values per block of the display counts
ColumnKind = Literal["numeric", "categorical"]
IntArray = np.ndarray


@dataclass(frozen=True)
class NumericSide:
    """Present values (sorted ascending when ``is_sorted``); ``rows`` counts missing ones too.

    Large windows are not sorted: their Wasserstein distance comes from buckets
    (``statistics.wasserstein_unsorted``), and every other question below has an answer that does not
    need the order.
    """

    values: FloatArray
    rows: int
    missing: int
    invalid: int = 0  # values that were there but not numbers (counted in missing too)
    is_sorted: bool = True

    @property
    def present(self) -> int:
        return len(self.values)

    @property
    def minimum(self) -> float:
        return float(self.values[0] if self.is_sorted else np.min(self.values))

    @property
    def maximum(self) -> float:
        return float(self.values[-1] if self.is_sorted else np.max(self.values))

    def sorted_values(self) -> FloatArray:
        return self.values if self.is_sorted else np.sort(self.values)

    def distinct(self, limit: int) -> FloatArray | None:
        """The distinct values when there are at most ``limit`` of them, else None."""
        if not len(self.values):
            return self.values
        if self.is_sorted:
            breaks = np.flatnonzero(self.values[1:] != self.values[:-1])
            if len(breaks) >= limit:
                return None
            return np.concatenate((self.values[:1], self.values[breaks + 1]))
        # A strided sample rules out most columns; a few values seen there are checked against all.
        seen = np.unique(self.values[:: max(1, len(self.values) // 20_000)])
        if len(seen) > limit:
            return None
        if np.isin(self.values, seen).all():
            return seen
        every = pd.unique(self.values)
        return np.sort(every) if len(every) <= limit else None

    def counts_of(self, values: FloatArray) -> FloatArray:
        """How many times each of ``values`` occurs."""
        if not self.is_sorted:
            return np.array([np.count_nonzero(self.values == v) for v in values], dtype=np.float64)
        left = np.searchsorted(self.values, values, side="left")
        right = np.searchsorted(self.values, values, side="right")
        return (right - left).astype(np.float64)

    def histogram(self, edges: FloatArray, *, exact: bool = True) -> FloatArray:
        """Counts between consecutive, evenly spaced edges, the last bin closed (as ``np.histogram``);
        ``exact=False`` allows the display counts of :func:`uniform_counts` for unsorted values."""
        if not self.is_sorted:
            if not exact:
                return uniform_counts(self.values, edges)
            span = (float(edges[0]), float(edges[-1]))
            return np.histogram(self.values, bins=len(edges) - 1, range=span)[0].astype(np.float64)
        cuts = np.searchsorted(self.values, edges, side="left")
        cuts[-1] = len(self.values)
        return np.diff(cuts).astype(np.float64)


def uniform_counts(values: FloatArray, edges: FloatArray) -> FloatArray:
    """Counts per bin of evenly spaced ``edges`` that span all ``values``, by arithmetic.

    A value within rounding of an interior edge may land in the bin next to np.histogram's choice:
    these counts are for display (summaries, the report's histograms). np.histogram itself loops over
    blocks in Python, and sorts when given the edges.
    """
    bins = len(edges) - 1
    width = float(edges[-1] - edges[0])
    factor = bins / width if width > 0 else 0.0
    counts = np.zeros(bins, dtype=np.intp)
    # By blocks, in reused buffers: no temporary as large as the column (fresh pages cost more than
    # the arithmetic), and each block stays in cache.
    position = np.empty(min(BLOCK, len(values)))
    index = np.empty(len(position), dtype=np.intp)
    for first in range(0, len(values), BLOCK):
        block = values[first : first + BLOCK]
        q, k = position[: len(block)], index[: len(block)]
        np.subtract(block, edges[0], out=q)
        q *= factor
        # clipped as floats: the cast then truncates non-negative numbers, i.e. floors them
        np.clip(q, 0.0, bins - 1, out=q)
        k[...] = q
        counts += np.bincount(k, minlength=bins)
    return counts.astype(np.float64)


@dataclass(frozen=True)
class CategoricalSide:
    """Counts per category (categories as strings, first-seen order); ``rows`` counts missing too."""

    categories: pd.Index
    counts: FloatArray
    rows: int
    missing: int

    @property
    def present(self) -> int:
        return self.rows - self.missing


Side = NumericSide | CategoricalSide


def numeric_side(series: pd.Series, *, sort: bool = True) -> NumericSide:
    invalid = 0
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or pd.api.types.is_timedelta64_dtype(series.dtype):
        series = _seconds(series)
    elif series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        parsed = pd.to_numeric(series, errors="coerce")
        invalid = int((parsed.isna() & series.notna()).sum())
        series = parsed
    # float64 columns are read without a copy (np.sort makes the one copy we need)
    raw = series.to_numpy() if series.dtype == np.float64 else series.to_numpy(np.float64, na_value=np.nan)
    if not sort:
        present = raw[np.isfinite(raw)]
        return NumericSide(
            present, rows=len(raw), missing=len(raw) - len(present), invalid=invalid, is_sorted=False
        )
    values = np.sort(raw)
    # After the sort NaNs are last and infinities sit at the ends: slicing drops them without a mask.
    nan_count = int(np.count_nonzero(np.isnan(values))) if len(values) and np.isnan(values[-1]) else 0
    end = len(values) - nan_count
    start = int(np.searchsorted(values[:end], -np.inf, side="right"))
    end = int(np.searchsorted(values[:end], np.inf, side="left"))
    present = values[start:end]
    return NumericSide(values=present, rows=len(values), missing=len(values) - len(present), invalid=invalid)


def _seconds(series: pd.Series) -> pd.Series:
    """Timestamps (or durations) as float seconds, NaT as NaN, for a time column declared numeric."""
    values: np.ndarray
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        values = pd.to_timedelta(series).to_numpy(dtype="timedelta64[ns]")
    else:
        stamps = pd.to_datetime(series)
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert(None)
        values = stamps.to_numpy(dtype="datetime64[ns]")
    numbers = values.astype(np.int64) / 1e9
    numbers[np.isnat(values)] = np.nan
    return pd.Series(numbers)


def categorical_side(series: pd.Series) -> CategoricalSide:
    arrow = _arrow_strings(series)
    if arrow is not None:
        return _arrow_side(arrow)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = series.cat.categories
    else:
        try:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
        except TypeError:  # unhashable values (lists, dicts from JSON): compared by their text
            codes, uniques = pd.factorize(series.map(lambda v: v if _is_missing(v) else str(v)))
    valid = codes[codes >= 0]
    counts = np.bincount(valid, minlength=len(uniques)).astype(np.float64)
    categories = pd.Index(np.asarray(uniques).astype(str), dtype=object)
    if categories.has_duplicates:  # 1 and "1", or 1 and 1.0, became one string
        frame = pd.Series(counts).groupby(categories, sort=False).sum()
        categories, counts = pd.Index(frame.index, dtype=object), frame.to_numpy(dtype=np.float64)
    return CategoricalSide(
        categories=categories, counts=counts, rows=len(series), missing=len(series) - len(valid)
    )


def _arrow_strings(series: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow array behind a column of Arrow strings (pandas 3's default for text read from Parquet),
    else None."""
    if not isinstance(series.dtype, pd.StringDtype) or series.dtype.storage != "pyarrow":
        return None
    array = pa.chunked_array(pa.array(series))
    return array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else None


def _arrow_side(array: pa.ChunkedArray) -> CategoricalSide:
    # Arrow's hash count keeps first-seen order, as pd.factorize does, at about half its cost.
    counted = pc.value_counts(array)
    values = counted.field("values")
    present = pc.is_valid(values)
    categories = pd.Index(values.filter(present).to_pylist(), dtype=object)
    counts = counted.field("counts").filter(present).to_numpy().astype(np.float64)
    rows = len(array)
    return CategoricalSide(categories=categories, counts=counts, rows=rows, missing=array.null_count)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def side(series: pd.Series, kind: ColumnKind, *, sort: bool = True) -> Side:
    return numeric_side(series, sort=sort) if kind == "numeric" else categorical_side(series)


@dataclass(frozen=True)
class Profile:
    """A frame reduced to what drift needs, column by column."""

    rows: int
    sides: Mapping[str, Side]
    schema: Mapping[str, ColumnKind]


def profile(frame: pd.DataFrame, schema: Mapping[str, ColumnKind]) -> Profile:
    """Profile the schema's columns of ``frame`` (a column the frame lacks is all missing)."""
    sides: dict[str, Side] = {}
    for name, kind in schema.items():
        series = frame[name] if name in frame.columns else pd.Series([np.nan] * len(frame), dtype=float)
        sides[name] = side(series, kind)
    return Profile(rows=len(frame), sides=sides, schema=dict(schema))


def infer_schema(frame: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> dict[str, ColumnKind]:
    """Numbers are numeric (booleans are categorical), timestamps are left out (a window's times always
    differ from the reference's), everything else is categorical."""
    schema: dict[str, ColumnKind] = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if name in exclude or pd.api.types.is_datetime64_any_dtype(dtype):
            continue
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        schema[str(name)] = "numeric" if numeric else "categorical"
    return schema


# --- summaries (what statistics.json and the report show of each side) -------------------------------

SKETCH_POINTS = 128  # quantiles kept per numeric column: a small, mergeable stand-in for a KLL sketch
SUMMARY_BUCKETS = 10  # Model Monitor materialises distributions in 10 buckets
TOP_CATEGORIES = 50


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one side of a column; numeric or categorical fields are None."""

    rows: int
    missing: int
    mean: float | None = None
    std: float | None = None
    total: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    integral: bool = False
    buckets: tuple[tuple[float, float, int], ...] = ()  # (lower, upper, count), equal widths
    sketch: tuple[float, ...] = ()  # quantiles at evenly spaced ranks
    distinct: int | None = None
    categories: tuple[tuple[str, int], ...] = ()  # the most frequent categories with their counts


def summarize(column: Side) -> Summary:
    if isinstance(column, CategoricalSide):
        order = np.argsort(-column.counts, kind="stable")[:TOP_CATEGORIES]
        return Summary(
            rows=column.rows,
            missing=column.missing,
            distinct=int(np.count_nonzero(column.counts)),
            categories=tuple((str(column.categories[i]), int(column.counts[i])) for i in order),
        )
    values = column.values
    if not len(values):
        return Summary(rows=column.rows, missing=column.missing)
    low, high = column.minimum, column.maximum
    edges = np.linspace(low, high, SUMMARY_BUCKETS + 1) if high > low else np.array([low, high])
    counts = column.histogram(edges, exact=False)
    # The sketch: evenly spaced order statistics (of a strided sample when the values are not sorted,
    # an approximation as Model Monitor's KLL sketch is one).
    if column.is_sorted:
        ranks = np.linspace(0, len(values) - 1, min(SKETCH_POINTS, len(values))).round().astype(np.int64)
        sketch = values[ranks]
    else:
        # one sort of the sample: np.quantile with 128 points partitions 128 times, ~3x slower
        sample = np.sort(values[:: max(1, len(values) // 10_000)])
        sketch = sample[np.linspace(0, len(sample) - 1, SKETCH_POINTS).round().astype(np.int64)]
    return Summary(
        rows=column.rows,
        missing=column.missing,
        mean=float(values.mean()),
        std=float(values.std()),
        total=float(values.sum()),
        minimum=low,
        maximum=high,
        integral=bool(np.all(sketch == np.round(sketch))),
        buckets=tuple(
            (float(a), float(b), int(c)) for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ),
        sketch=tuple(float(v) for v in sketch),
    )
