"""The compiled fast path of the inference handlers, for the pipelines mlcycle.modeling builds.

When the fitted pipeline has the shape mlcycle.modeling builds, its preprocessing is replayed in NumPy
(:func:`compile_matrix`: same operations, same floats) instead of through pandas, and a
HistGradientBoosting model's trees are scored all at once (:class:`Booster`, bit-identical to
scikit-learn). Anything else is declined (None), and the fitted pipeline runs as it is.

Part of the model's inference code in ``model.tar.gz`` (pipelines/inference.py): imports nothing of
mlcycle, and only NumPy and scikit-learn.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING or __package__:  # imported as pipelines.inference_compiled (and read so by mypy)
    from .inference_codecs import Prediction
else:  # in the serving container: a top-level module beside its siblings in the code dir
    from inference_codecs import Prediction

# ---- the NumPy replay of mlcycle.modeling's preprocessing ---------------------------------------------


def compile_matrix(
    pipeline: Any, kinds: dict[str, str]
) -> Callable[[dict[str, np.ndarray]], np.ndarray] | None:
    """A function building the estimator's input from the columns, doing what the fitted
    ``ColumnTransformer`` of mlcycle.modeling.build_pipeline does (median imputation and scaling of the
    numeric features, one-hot of the categorical ones, unknown categories all zeros); None for any other
    pipeline shape, which then runs as fitted."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        pre = pipeline[0]
        if len(pipeline) != 2 or not isinstance(pre, ColumnTransformer) or pre.remainder != "drop":
            return None
        (_, num, num_cols), (_, cat, cat_cols) = [t for t in pre.transformers_ if t[0] != "remainder"]
        imputer, scaler = num.steps[0][1], num.steps[1][1]
        if not (
            isinstance(imputer, SimpleImputer)
            and isinstance(scaler, StandardScaler)
            and isinstance(cat, OneHotEncoder)
            and cat.handle_unknown == "ignore"
            and cat.drop is None
            and set(num_cols) | set(cat_cols) == set(kinds)
        ):
            return None
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
    fill = np.asarray(imputer.statistics_, dtype=float)
    if np.isnan(fill).any():
        return None  # the imputer dropped an all-missing training column: let the pipeline do it
    mean = np.zeros_like(fill) if scaler.mean_ is None else np.asarray(scaler.mean_)
    scale = np.ones_like(fill) if scaler.scale_ is None else np.asarray(scaler.scale_)
    # Per categorical column, its categories' columns in the estimator's input.
    places: list[dict[Any, int]] = []
    total = len(num_cols)
    for cats in cat.categories_:
        places.append({value: total + i for i, value in enumerate(cats)})
        total += len(cats)

    def matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(columns[num_cols[0]]) if num_cols else len(columns[cat_cols[0]])
        numeric = np.empty((rows, len(num_cols)))
        for j, name in enumerate(num_cols):
            numeric[:, j] = columns[name]
        missing = np.isnan(numeric)
        if missing.any():
            np.copyto(numeric, fill, where=missing)
        numeric -= mean
        numeric /= scale
        out = np.zeros((rows, total))
        out[:, : len(num_cols)] = numeric
        flat = out.reshape(-1)
        if rows <= 16:  # a few cells: a dict hit each (an unknown or missing category sets no column)
            hits = [
                row * total + place[value]
                for name, place in zip(cat_cols, places, strict=True)
                for row, value in enumerate(columns[name].tolist())
                if value in place
            ]
            flat[hits] = 1.0
            return out
        starts = np.arange(0, rows * total, total)
        for name, place in zip(cat_cols, places, strict=True):
            column = columns[name]
            # The lookup once per distinct value (None or text), then per cell a dict hit.
            found = {value: place.get(value, -1) for value in set(column)}
            index = np.fromiter(map(found.__getitem__, column), dtype=np.intp, count=rows)
            known = index >= 0
            flat[starts[known] + index[known]] = 1.0
        return out

    return matrix


# ---- the trees, all at once ---------------------------------------------------------------------------


class Booster:
    """A fitted HistGradientBoosting model's trees as flat tables, evaluated for all trees and rows at once.

    scikit-learn walks its trees one at a time (200 calls for the example model, ~1.2 ms for a single row).
    Here the trees are scored the QuickScorer way (Lucchese et al., SIGIR 2015), in a fixed number of
    NumPy steps whatever the rows: a tree's leaves are bits of a word, left to right; every split that
    sends a row right rules out the leaves of its left subtree, so the row's leaf is the lowest bit left
    after ANDing, per tree, the masks of the splits it fails. The comparisons are made once per distinct
    (feature, threshold, missing-goes-left) split, the exact ``x <= threshold`` scikit-learn makes (a
    missing value goes where the split sends missing values). The leaves are then summed tree by tree in
    scikit-learn's own order (the baseline, then each iteration's value, sequentially), so the raw scores,
    and hence labels and probabilities, are bit-for-bit scikit-learn's: :meth:`compile` checks that on
    probe rows at load, and a parity test checks it on real ones.
    """

    #: Rows scored per block: the per-split words stay in cache (measured best at 256-512 rows).
    BLOCK = 256

    def __init__(self, estimator: Any, trees: list[Any], leaves: int) -> None:
        self.estimator = estimator
        self.per_iteration = int(estimator.n_trees_per_iteration_)
        bits = next(b for b in (8, 16, 32, 64) if leaves <= b)
        self.word, self.signed = np.dtype(f"uint{bits}"), np.dtype(f"int{bits}")
        every = (1 << bits) - 1
        splits = [self._splits(tree.nodes, every) for tree in trees]
        self.trees, self.depth = len(trees), max(len(s[0]) for s in splits)
        # One row of the (depth, trees) tables per split rank; a tree with fewer splits is padded with
        # splits whose mask rules nothing out.
        keys: dict[tuple[int, float, bool], int] = {}
        node_key = np.zeros((self.depth, self.trees), dtype=np.intp)
        mask = np.full((self.depth, self.trees), every, dtype=self.word)
        values = np.zeros((self.trees, leaves))
        for t, (tree_splits, tree_values) in enumerate(splits):
            values[t, : len(tree_values)] = tree_values
            for rank, (feature, threshold, missing_left, split_mask) in enumerate(tree_splits):
                node_key[rank, t] = keys.setdefault((feature, threshold, missing_left), len(keys))
                mask[rank, t] = split_mask
        if not keys:  # every tree is a single leaf
            keys[(0, math.inf, False)] = 0
        distinct = list(keys)
        self.feature = np.asarray([k[0] for k in distinct], dtype=np.intp)
        self.threshold = np.asarray([k[1] for k in distinct], dtype=float)[:, None]
        self.missing_left = np.asarray([k[2] for k in distinct], dtype=bool)[:, None]
        self.node_key = node_key.ravel()
        self.mask = mask.reshape(-1, 1)
        self.values = values.ravel()
        self.value_offset = (np.arange(self.trees) * leaves)[:, None]
        self.lowest = None
        if bits <= 16:  # index of the lowest set bit, by table
            self.lowest = np.zeros(1 << bits, dtype=np.intp)
            for b in range(bits):
                self.lowest[1 << b] = b
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=float).reshape(-1)
        self._local = threading.local()

    @staticmethod
    def _splits(nodes: np.ndarray, every: int) -> tuple[list[tuple[int, float, bool, int]], list[float]]:
        """A tree's splits (feature, threshold, missing goes left, mask of the leaves left once the split
        fails) and its leaf values, leaves numbered left to right."""
        splits: list[tuple[int, float, bool, int]] = []
        values: list[float] = []
        stack: list[tuple[int, int]] = [(0, -1)]  # (node, index of its split once entered, or -1)
        pending: dict[int, int] = {}  # split index -> first leaf of its left subtree
        while stack:
            node, split = stack.pop()
            if split >= 0:  # back from the left subtree: it holds leaves [first, len(values))
                first = pending.pop(split)
                width = len(values) - first
                feature, threshold, missing_left, _ = splits[split]
                splits[split] = (feature, threshold, missing_left, every & ~(((1 << width) - 1) << first))
                continue
            row = nodes[node]
            if row["is_leaf"]:
                values.append(float(row["value"]))
                continue
            index = len(splits)
            splits.append(
                (int(row["feature_idx"]), float(row["num_threshold"]), bool(row["missing_go_to_left"]), 0)
            )
            pending[index] = len(values)
            stack.append((int(row["right"]), -1))
            stack.append((node, index))  # closes the left subtree before the right one starts
            stack.append((int(row["left"]), -1))
        return splits, values

    @classmethod
    def compile(cls, estimator: Any) -> Booster | None:
        """None unless ``estimator`` is a fitted scikit-learn HistGradientBoosting model without
        categorical splits (mlcycle one-hot encodes categories, so its models have none), of at most 64
        leaves a tree, whose raw scores this reproduces bit for bit on probe rows."""
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

            if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
                return None
            trees = [tree for iteration in estimator._predictors for tree in iteration]
            if not trees or any(tree.nodes["is_categorical"].any() for tree in trees):
                return None
            leaves = max(int(tree.nodes["is_leaf"].sum()) for tree in trees)
            if leaves > 64 or any(np.isnan(tree.nodes["num_threshold"]).any() for tree in trees):
                return None
            booster = cls(estimator, trees, leaves)
            probe = booster._probe()
            for rows in (probe[:1], probe):
                if not np.array_equal(booster.raw(rows), estimator._raw_predict(rows), equal_nan=True):
                    return None
            return booster
        except (AttributeError, TypeError, ValueError, IndexError, KeyError):
            return None

    def _probe(self) -> np.ndarray:
        """Rows on, just below and just above the model's thresholds, and missing values."""
        width = int(self.estimator.n_features_in_)
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(48, width))
        cuts = self.threshold.ravel()
        for feature in range(width):
            own = cuts[(self.feature == feature) & np.isfinite(cuts)]
            if len(own):
                picked = rng.choice(own, size=len(rows))
                rows[:, feature] = picked + rng.choice([0.0, 1e-9, -1e-9], size=len(rows)) * (1 + abs(picked))
        rows[rng.random(rows.shape) < 0.1] = np.nan
        return rows

    def raw(self, data: np.ndarray) -> np.ndarray:
        """``estimator._raw_predict(data)``: shape (rows, trees per iteration)."""
        data = np.asarray(data, dtype=float)
        rows = len(data)
        if rows <= self.BLOCK:
            return self._block(data)
        return np.concatenate([self._block(data[s : s + self.BLOCK]) for s in range(0, rows, self.BLOCK)])

    def _block(self, data: np.ndarray) -> np.ndarray:
        rows, k = len(data), self.per_iteration
        splits, nodes, trees = len(self.feature), len(self.node_key), self.trees
        space = self._workspace()

        def buffer(name: str, dtype: Any, *shape: int) -> np.ndarray:
            """A C-contiguous ``shape`` array over this thread's buffer ``name`` (last axis <= BLOCK + 1)."""
            size = math.prod(shape[:-1]) * (self.BLOCK + 1)
            return space.setdefault(name, np.empty(size, dtype=dtype))[: math.prod(shape)].reshape(shape)

        # Every array lives in a buffer this thread reuses: fresh arrays of this size come from mmap, and
        # touching their pages again on every request cost more than the arithmetic (~2 us a page).
        x = np.take(data.T, self.feature, axis=0, out=buffer("x", float, splits, rows), mode="clip")
        left = np.less_equal(x, self.threshold, out=buffer("left", bool, splits, rows))
        if np.isnan(data).any():  # NaN compares False: it goes left only where the split sends missing left
            missing = np.isnan(x, out=buffer("missing", bool, splits, rows))
            left |= np.logical_and(missing, self.missing_left, out=missing)
        # All ones where the row goes left (the split rules nothing out), else the split's mask.
        ones = np.negative(
            left.view(np.uint8), dtype=self.signed, out=buffer("ones", self.signed, splits, rows)
        )
        words = buffer("words", self.word, nodes, rows)
        np.take(ones.view(self.word), self.node_key, axis=0, out=words, mode="clip")
        words |= self.mask
        alive = np.bitwise_and.reduce(
            words.reshape(self.depth, trees, rows), axis=0, out=buffer("alive", self.word, trees, rows)
        )
        lowest = np.invert(alive, out=buffer("lowest", self.word, trees, rows))
        lowest += self.word.type(1)
        alive &= lowest  # the lowest bit: the leftmost leaf still possible
        # The lowest bit's index: by table for words of 16 bits or fewer, else from its float exponent.
        leaf = buffer("leaf", np.intp, trees, rows)
        if self.lowest is not None:
            np.take(self.lowest, alive, out=leaf, mode="clip")
        else:
            exponent = np.frexp(
                alive.astype(float),
                buffer("mantissa", float, trees, rows),
                buffer("exp", np.intc, trees, rows),
            )[1]
            np.subtract(exponent, 1, out=leaf, casting="unsafe")
        leaf += self.value_offset
        # The sum over iterations, in order. A reduction over the outer axis adds row after row; with a
        # single column NumPy would sum pairwise instead, so a lone score gets a zero column beside it.
        columns = rows + (rows * k == 1)
        stack = buffer("stack", float, trees // k + 1, k, columns)
        stack[0] = self.baseline[:, None]
        stack[1:, :, rows:] = 0.0
        np.take(self.values, leaf.reshape(-1, k, rows), out=stack[1:, :, :rows], mode="clip")
        raw: np.ndarray = np.add.reduce(stack, axis=0)[:, :rows].T
        return raw

    def _workspace(self) -> dict[str, np.ndarray]:
        """This thread's buffers (a server predicts one request at a time per thread)."""
        try:
            space: dict[str, np.ndarray] = self._local.space
        except AttributeError:
            space = self._local.space = {}
        return space

    def predict(self, data: np.ndarray, *, classifier: bool) -> Prediction:
        raw = self.raw(data)
        loss = self.estimator._loss
        if not classifier:
            return Prediction(loss.link.inverse(raw.ravel()).tolist(), None)
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return Prediction(self.estimator.classes_[encoded].tolist(), loss.predict_proba(raw))
