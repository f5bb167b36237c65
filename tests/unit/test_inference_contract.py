"""pipelines/inference.py and its modules: the SageMaker inference contract as a table, and parity with
scikit-learn."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle import modeling
from mlcycle.config import Settings
from mlcycle.example import churn
from pipelines import inference
from pipelines import inference_codecs as codecs
from pipelines import inference_compiled as compiled
from tests.models import CSV_ROW, ROW, example_model_dir

CSV, JSON, JSONL, NPY = "text/csv", "application/json", "application/jsonlines", "application/x-npy"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Any:
    return inference.model_fn(str(example_model_dir(tmp_path_factory.mktemp("model"), settings)))


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


# (case, body, content type, accept, status, answer type or message fragment)
TABLE: list[tuple[str, Any, str, str, int, str]] = [
    ("csv one row", CSV_ROW, CSV, "", 200, JSON),
    ("csv rows, no trailing newline", f"{CSV_ROW}\n{CSV_ROW}", CSV, JSON, 200, JSON),
    ("csv with charset", CSV_ROW, "text/csv; charset=utf-8", JSON, 200, JSON),
    ("csv missing values", "12,,2,,one-year,card,", CSV, JSON, 200, JSON),
    ("json records", json.dumps([ROW, ROW]), JSON, JSON, 200, JSON),
    ("json instances of records", json.dumps({"instances": [ROW]}), JSON, JSON, 200, JSON),
    ("json instances of rows", json.dumps({"instances": [list(ROW.values())]}), JSON, JSON, 200, JSON),
    ("json nested lists", json.dumps([list(ROW.values())] * 3), JSON, JSON, 200, JSON),
    ("json single record", json.dumps(ROW), JSON, JSON, 200, JSON),
    ("json single row", json.dumps(list(ROW.values())), JSON, JSON, 200, JSON),
    ("json null is missing", json.dumps(ROW | {"age": None}), JSON, JSON, 200, JSON),
    ("jsonlines records", f"{json.dumps(ROW)}\n{json.dumps(ROW)}\n", JSONL, JSON, 200, JSON),
    ("npy string array", _npy(np.array([[str(v) for v in ROW.values()]])), NPY, JSON, 200, JSON),
    ("npy 1-d row", _npy(np.array([str(v) for v in ROW.values()])), NPY, JSON, 200, JSON),
    ("accept csv", CSV_ROW, CSV, CSV, 200, CSV),
    ("accept jsonlines", CSV_ROW, CSV, JSONL, 200, JSONL),
    ("accept q-values", CSV_ROW, CSV, "application/jsonlines;q=0.5, text/csv;q=0.9", 200, CSV),
    ("accept wildcard", CSV_ROW, CSV, "*/*", 200, JSON),
    ("accept text/*", CSV_ROW, CSV, "text/*", 200, CSV),
    ("accept npy", CSV_ROW, CSV, NPY, 200, NPY),
    ("unsupported content type", CSV_ROW, "text/plain", JSON, 415, "unsupported content type"),
    ("unsupported accept", CSV_ROW, CSV, "image/png", 406, "cannot answer"),
    ("refused by q=0", CSV_ROW, CSV, "application/json;q=0", 406, "cannot answer"),
    ("empty body", "", CSV, JSON, 400, "empty body"),
    ("blank body", "\n\n", JSON, JSON, 400, "empty body"),
    ("header line", ",".join(ROW) + "\n" + CSV_ROW, CSV, JSON, 400, "row 1 is a header"),
    ("too few values", "1,2", CSV, JSON, 400, "row 1 has 2 values; the model takes 7"),
    ("too many values in row 2", f"{CSV_ROW}\n{CSV_ROW},9", CSV, JSON, 400, "row 2 has 8 values"),
    (
        "not a number",
        CSV_ROW.replace("12", "twelve", 1),
        CSV,
        JSON,
        400,
        "row 1, column 'tenure_months': 'twelve'",
    ),
    ("not a number in json", json.dumps([ROW, ROW | {"age": "old"}]), JSON, JSON, 400, "row 2, column 'age'"),
    (
        "record lacks a feature",
        json.dumps({k: v for k, v in ROW.items() if k != "region"}),
        JSON,
        JSON,
        400,
        "lacks ['region']",
    ),
    ("malformed json", '{"instances": [', JSON, JSON, 400, "not valid JSON"),
    ("malformed jsonlines", '{"a": 1}\n{oops\n', JSONL, JSON, 400, "line 2 is not valid JSON"),
    ("json of the wrong shape", json.dumps([[[1]]]), JSON, JSON, 400, "flat list"),
    (
        "npy object array",
        _npy(np.array([[1, "a"]], dtype=object), allow_pickle=True),
        NPY,
        JSON,
        400,
        "object arrays are refused",
    ),
    ("npy garbage", b"\x93NUMPY-not-really", NPY, JSON, 400, "not a .npy array"),
    ("not utf-8", b"\xff\xfe12,3", CSV, JSON, 400, "not UTF-8"),
]


@pytest.mark.parametrize(
    ("case", "body", "content_type", "accept", "status", "expected"), TABLE, ids=[t[0] for t in TABLE]
)
def test_contract(
    model: Any, case: str, body: Any, content_type: str, accept: str, status: int, expected: str
) -> None:
    if status == 200:
        payload, answer_type = inference.transform_fn(model, body, content_type, accept)
        assert answer_type == expected
        assert payload
    else:
        with pytest.raises(
            codecs.ClientError, match=expected.replace("[", r"\[").replace("(", r"\(")
        ) as raised:
            inference.transform_fn(model, body, content_type, accept)
        assert raised.value.status == status


def test_answers_carry_the_same_prediction_in_every_format(model: Any) -> None:
    body = f"{CSV_ROW}\n12,,2,,one-year,card,\n"
    as_json = json.loads(inference.transform_fn(model, body, CSV, JSON)[0])
    as_csv = inference.transform_fn(model, body, CSV, CSV)[0].decode().splitlines()
    as_lines = [
        json.loads(line) for line in inference.transform_fn(model, body, CSV, JSONL)[0].decode().splitlines()
    ]
    as_npy = np.load(io.BytesIO(inference.transform_fn(model, body, CSV, NPY)[0]), allow_pickle=False)
    for i in range(2):
        label, proba = as_json["predictions"][i], as_json["probabilities"][i]
        assert as_csv[i].split(",") == [str(label), *(str(p) for p in proba)]
        assert as_lines[i] == {"prediction": label, "probabilities": proba}
        assert as_npy[i].tolist() == [label, *proba]


def _frame(rows: int, seed: int) -> pd.DataFrame:
    frame = churn.generate(rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame = frame.astype({"age": "float64"})
    frame.loc[rng.random(rows) < 0.1, "monthly_charges"] = np.nan  # missing numeric values
    frame.loc[rng.random(rows) < 0.05, "contract"] = "weekly"  # unseen categories
    return frame


@pytest.mark.parametrize(
    ("family", "task"),
    [
        ("hist_gradient_boosting", "classification"),
        ("hist_gradient_boosting", "regression"),
        ("random_forest", "classification"),
        ("logistic_regression", "classification"),
    ],
)
@pytest.mark.parametrize("rows", [1, 7, 100, 300])  # both sides of the booster's 256-row blocks
@pytest.mark.parametrize("media", [JSON, CSV])
def test_fast_path_is_identical_to_the_fitted_pipeline(
    tmp_path: Path, settings: Settings, family: str, task: str, rows: int, media: str
) -> None:
    # GIVEN a model trained by mlcycle.modeling and rows with missing values and unseen categories
    model = inference.model_fn(str(example_model_dir(tmp_path, settings, family, task)))
    frame = _frame(rows, seed=rows)
    problem = settings.problem.model_dump(mode="json")
    features = modeling.features_frame(frame, problem)
    records = json.loads(features.to_json(orient="records"))
    # WHEN the handlers predict them
    if media == CSV:  # column-wise parsing; a missing value is an empty field
        body = features.to_csv(header=False, index=False)
        assert codecs._csv_columns(body, model.kinds) is not None
    else:
        body = json.dumps(records)
    answer = json.loads(inference.transform_fn(model, body, media, JSON)[0])
    # THEN labels and probabilities are scikit-learn's own, bit for bit before the 6-digit rounding
    assert answer["predictions"] == model.pipeline.predict(features).tolist()
    if task == "classification":
        assert answer["probabilities"] == model.pipeline.predict_proba(features).round(6).tolist()
    assert model._matrix is not None  # the NumPy preprocessing ran, not the pipeline's
    assert (model._booster is not None) == family.startswith("hist")


def test_requests_predicted_together_get_the_answers_they_get_alone(model: Any) -> None:
    # GIVEN requests of every shape, some of them wrong
    requests = [(body, content_type, accept) for _, body, content_type, accept, _, _ in TABLE]
    # WHEN they are predicted in one batch
    together = inference.transform_many(model, requests)
    # THEN each gets exactly its own answer, or its own error
    for (case, body, content_type, accept, status, _), result in zip(TABLE, together, strict=True):
        if status == 200:
            assert result == inference.transform_fn(model, body, content_type, accept), case
        else:
            assert isinstance(result, codecs.ClientError) and result.status == status, case


def test_fault_injection_fails_the_share_of_predictions_it_names(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the model's container asks for every prediction to fail (mlcycle train --inject-model-errors 1)
    from mlcycle.names import MODEL_FAULT_ENV

    assert inference.FAULT_ENV == MODEL_FAULT_ENV  # the name the register step sets
    monkeypatch.setenv(MODEL_FAULT_ENV, "1")
    broken = inference.model_fn(str(example_model_dir(tmp_path, settings)))
    # THEN a valid request fails as the model itself failing (a 500), while a client's mistake is still a 4xx
    with pytest.raises(inference.InjectedFault):
        inference.transform_fn(broken, CSV_ROW, CSV, JSON)
    assert inference.transform_many(broken, [("", CSV, JSON)])[0].status == 400
    # AND without the variable the same model predicts
    monkeypatch.delenv(MODEL_FAULT_ENV)
    assert inference.model_fn(str(example_model_dir(tmp_path, settings))).fault_rate == 0.0


@pytest.mark.parametrize(
    ("kind", "classes", "leaves"),
    [
        ("classifier", 2, 15),  # 16-bit words, leaf by table
        ("classifier", 3, 31),  # several trees per iteration; 32-bit words, leaf from the exponent
        ("regressor", 0, 63),  # 64-bit words
        ("regressor", 0, 6),  # 8-bit words
    ],
)
def test_booster_scores_are_scikit_learns_bit_for_bit(kind: str, classes: int, leaves: int) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    # GIVEN a booster trained on data with missing values (so splits send them either way)
    rng = np.random.default_rng(leaves)
    x = rng.normal(size=(1500, 6))
    x[rng.random(x.shape) < 0.15] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.isnan(x[:, 2])
    if kind == "classifier":
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
        estimator: Any = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=leaves, random_state=0)
    else:
        y = signal + rng.normal(size=len(signal))
        estimator = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=leaves, random_state=0)
    estimator.fit(x, y)
    booster = compiled.Booster.compile(estimator)
    assert booster is not None
    # WHEN it scores rows with missing values, infinities and values exactly on its thresholds,
    # in batches below, at and across its block size
    cuts = booster.threshold.ravel()
    for rows in (1, 2, 3, booster.BLOCK, booster.BLOCK + 1, 700):
        data = rng.normal(size=(rows, 6))
        data[rng.random(data.shape) < 0.2] = np.nan
        data[rng.random(data.shape) < 0.02] = np.inf
        on_cut = rng.random(data.shape) < 0.3
        data[on_cut] = rng.choice(cuts[np.isfinite(cuts)], size=int(on_cut.sum()))
        # THEN its raw scores are scikit-learn's, bit for bit
        assert np.array_equal(booster.raw(data), estimator._raw_predict(data)), rows


def test_booster_declines_what_it_cannot_reproduce() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 3))
    wide = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=80, min_samples_leaf=5).fit(x, x[:, 0])
    assert max(int(t.nodes["is_leaf"].sum()) for p in wide._predictors for t in p) > 64
    assert compiled.Booster.compile(wide) is None  # more leaves than a 64-bit word: scikit-learn's walk
    categorical = HistGradientBoostingRegressor(max_iter=3, categorical_features=[0])
    codes = rng.integers(0, 4, 3000)
    categorical.fit(np.c_[codes, x[:, 1:]], codes % 2 + x[:, 1])
    assert any(t.nodes["is_categorical"].any() for p in categorical._predictors for t in p)
    assert compiled.Booster.compile(categorical) is None  # categorical splits: scikit-learn's walk


def _outcome(read: Any) -> Any:
    """Columns (NaN-aware, comparable) or the error (type, message, status) a read ends with."""
    try:
        columns = read()
    except Exception as error:
        return type(error).__name__, str(error), getattr(error, "status", None)
    return {
        name: [("nan" if isinstance(v, float) and np.isnan(v) else v) for v in values.tolist()]
        for name, values in columns.items()
    }


_ROW_2 = "24,99.9,0,61,month-to-month,bank-transfer,south"
CSV_BODIES = [body for _, body, content_type, _, _, _ in TABLE if content_type.startswith(CSV)] + [
    f"{CSV_ROW}\n\n{_ROW_2}\n\n",  # blank lines
    f"{CSV_ROW}\n{_ROW_2}\n" * 60,  # many rows
    " 12 ,\t70.5,2, 40 ,one-year,card,north",  # blanks around numbers (float strips them)
    "12,nan,2,NaN,one-year,card,north\n12, NA ,null,None,NA, ,None",  # missing marks
    "12,-nan,inf,-Infinity,one-year,card,north",  # what float() reads beyond digits
    "1_2,70.5,2,40,one-year,card,north",  # underscores: float() reads them, as _numeric does
    "\u0661\u0662,70.5,2,40,one-year,card,north",  # Arabic-Indic digits: float() reads them too
    "12,70.5,2,40,null, None ,nan",  # missing categories (and 'nan' is one)
    "12,70.5,2,40, one-year,card ,north",  # categories keep their blanks
    "12,70.5,2,40,weekly,cash,mars",  # unseen categories
    "\ufeff12,70.5,2,40,one-year,card,north",  # a byte-order mark is not a number
    " \n" + CSV_ROW,  # a blank-only line is a row of one value
    ",".join(ROW).upper() + "\n" + CSV_ROW,  # a header in capitals
    ",".join(f" {name} " for name in ROW) + "\n" + CSV_ROW,  # a header with blanks
    f"{CSV_ROW}\n{CSV_ROW.replace('70.5', 'x')}\n1,2",  # row 2 is not a number, row 3 too short
    f"{CSV_ROW.replace('40', 'old')}\n{CSV_ROW.replace('12', 'twelve', 1)}",  # first error row-major
    f"{CSV_ROW}\n{CSV_ROW},",  # an empty extra value in row 2
    '12,70.5,2,40,"one-year",card,north',  # quotes: the csv module's business
    '12,70.5,2,40,"one,year",card,north',
    f"{CSV_ROW}\r\n{_ROW_2}\r\n",  # CRLF
    f"{CSV_ROW}\r{_ROW_2}",
    f"{CSV_ROW}\x00",
    "12,70.5,2,40," + "x" * 140_000 + ",card,north",  # over the csv module's field size limit
]


@pytest.mark.parametrize("body", CSV_BODIES, ids=[f"csv{i}" for i in range(len(CSV_BODIES))])
def test_csv_read_column_wise_matches_the_careful_path(model: Any, body: Any) -> None:
    # GIVEN a CSV body, plain or not, right or wrong
    careful = _outcome(lambda: codecs.to_columns(codecs.decode(body, CSV), model.kinds))
    # WHEN it is read the fast way (column-wise when the body allows)
    fast = _outcome(lambda: codecs.read(body, CSV, model.kinds))
    # THEN the columns, or the error (its message naming the row and column, and status), are the same
    assert fast == careful


def test_plain_csv_takes_the_column_wise_path(model: Any) -> None:
    plain = [f"{CSV_ROW}\n{_ROW_2}\n" * 50, "12,,2,,one-year,card,", "12, NA ,null,None,NA, ,None"]
    assert all(codecs._csv_columns(body, model.kinds) is not None for body in plain)
    special = ['12,70.5,2,40,"one-year",card,north', f"{CSV_ROW}\r\n", "1,2", ",".join(ROW), "x" + CSV_ROW]
    assert all(codecs._csv_columns(body, model.kinds) is None for body in special)
