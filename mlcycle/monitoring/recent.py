"""The recent labelled window: what the endpoint served lately, with the labels that arrived for it.

The rows of the newest ``retraining.recent_windows`` committed monitor windows are read again from the
capture objects each window consumed (its ``capture_keys``), decoded and lined up with the model's
schema by the monitors' own code (:func:`mlcycle.monitoring.capture.decode` and ``typed``), and joined with
every stored label by inference id (:func:`mlcycle.monitoring.outcomes.join`). Only labelled rows are
kept, with the serving model's captured answer: ``score`` (a binary classifier's probability of the
positive class, a regressor's prediction) and ``prediction``.

One model must have scored every row for the comparison with the champion to be fair: only the windows
served by the newest window's model version count (a deployment in between ends the window). The
retraining controller writes the frame as Parquet (:func:`export_recent_window`) and the training
pipeline judges the challenger on it against the champion.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlcycle import modeling
from mlcycle.config import Settings
from mlcycle.monitoring import capture, labels, outcomes
from mlcycle.monitoring.windows import MonitorState
from mlcycle.pipeline_runs import RecentWindow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

#: Columns of the frame besides the problem's features.
COLUMNS = ("inference_id", "label", "score", "prediction", "model_version", "window_id", "inference_time")


#: How many committed windows are read per window wanted, so that empty ones can be skipped.
QUIET_WINDOWS_SKIPPED = 24


def labelled_window(
    settings: Settings,
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    monitor_table: str,
    monitoring_bucket: str,
    endpoint: str | None = None,
    windows: int | None = None,
) -> pd.DataFrame:
    """The labelled rows of the newest ``windows`` (default ``retraining.recent_windows``) committed
    monitor windows with traffic of ``endpoint`` (default the settings' endpoint), oldest window first:
    the features as captured, then :data:`COLUMNS`. Empty (with those columns) when nothing is labelled
    yet."""
    count = settings.retraining.recent_windows if windows is None else windows
    state = MonitorState(monitor_table, dynamodb)
    # Windows that saw no traffic hold no rows: they are skipped, not counted (quiet hours, or a clock
    # sped up), up to a day of hourly windows per window wanted.
    newest = state.windows(endpoint or settings.endpoint_name, limit=count * QUIET_WINDOWS_SKIPPED)
    records = served_by_newest(newest)[:count] if count else []
    features = list(settings.problem.features)
    parts = [_window_rows(s3, monitoring_bucket, record, features) for record in reversed(records)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty:
        return _empty(settings)
    problem = settings.problem.model_dump(mode="json")
    numeric = [name for name, kind in modeling.feature_schema(problem).items() if kind == "numeric"]
    joined = outcomes.join(capture.typed(frame, numeric), labels.load(s3, monitoring_bucket))
    labelled = joined.frame[joined.frame["label"].notna()].reset_index(drop=True)
    return _shaped(labelled, settings, numeric)


def served_by_newest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of committed windows (newest first), those with capture that the newest one's model served."""
    readable = [r for r in records if r.get("capture_keys") and r.get("model_version") is not None]
    if not readable:
        return []
    version = readable[0]["model_version"]
    return [r for r in readable if r["model_version"] == version]


def _window_rows(s3: S3Client, bucket: str, record: dict[str, Any], features: list[str]) -> pd.DataFrame:
    lines = [
        line
        for key in record["capture_keys"]
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
    ]
    frame = capture.decode(lines, features).frame
    return frame.assign(model_version=int(record["model_version"]), window_id=str(record["window_id"]))


def _shaped(frame: pd.DataFrame, settings: Settings, numeric: list[str]) -> pd.DataFrame:
    """The features (categorical cells as text: one type per column, as Parquet needs), the ids, the
    label as the stored labels type it, and the champion's answers as numbers."""
    problem = settings.problem
    out = frame.loc[:, list(problem.features)].copy()
    for name in problem.features:
        if name not in numeric:
            out[name] = out[name].map(lambda v: v if v is None or pd.isna(v) else str(v)).astype(object)
    prediction = pd.to_numeric(frame["prediction"], errors="coerce").astype("float64")
    score = prediction if problem.task == "regression" else frame["probability"].astype("float64")
    out["inference_id"] = frame["inference_id"].astype(str).to_numpy()
    out["label"] = frame["label"].astype("int64" if problem.task == "classification" else "float64")
    out["score"], out["prediction"] = score.to_numpy(), prediction.to_numpy()
    out["model_version"] = frame["model_version"].astype("int64").to_numpy()
    out["window_id"] = frame["window_id"].astype(str).to_numpy()
    out["inference_time"] = frame["inference_time"].to_numpy()
    return out


def _empty(settings: Settings) -> pd.DataFrame:
    kinds = modeling.feature_schema(settings.problem.model_dump(mode="json"))
    label = "int64" if settings.problem.task == "classification" else "float64"
    dtypes: dict[str, str] = {
        name: "float64" if kind == "numeric" else "object" for name, kind in kinds.items()
    }
    dtypes |= dict(
        zip(
            COLUMNS,
            ("object", label, "float64", "float64", "int64", "object", "datetime64[ns, UTC]"),
            strict=True,
        )
    )
    return pd.DataFrame(columns=list(dtypes)).astype(dtypes)


def export_recent_window(
    settings: Settings,
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    monitor_table: str,
    monitoring_bucket: str,
    artifacts_bucket: str,
    key: str,
) -> RecentWindow | None:
    """Write :func:`labelled_window` as Parquet to ``s3://{artifacts_bucket}/{key}``; None (nothing
    written) when no row is labelled."""
    frame = labelled_window(
        settings, s3=s3, dynamodb=dynamodb, monitor_table=monitor_table, monitoring_bucket=monitoring_bucket
    )
    if frame.empty:
        return None
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3.put_object(
        Bucket=artifacts_bucket, Key=key, Body=buffer.getvalue(), ContentType="application/x-parquet"
    )
    return RecentWindow(
        uri=f"s3://{artifacts_bucket}/{key}",
        rows=len(frame),
        windows=int(frame["window_id"].nunique()),
        model_version=int(frame["model_version"].iloc[0]),
    )
