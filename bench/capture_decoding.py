"""Capture decoding throughput: SageMaker data-capture JSONL into monitor rows, on one core.

The monitoring issue's target: at least 1M captured rows per minute in a single-core process. Records are
built as the endpoint captures them (CSV input, JSON answer), with 1 and with 10 rows per request; the
figure is rows per minute of CPU time of this (single-threaded) process.

    .venv/bin/python bench/capture_decoding.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import time

from mlcycle.application.settings import example_settings
from mlcycle.example import churn
from mlcycle.monitoring import capture

TARGET_ROWS_PER_MINUTE = 1_000_000


def records(rows: int, per_request: int, features: list[str]) -> list[bytes]:
    frame = churn.generate(rows, seed=1)
    out = []
    for start in range(0, rows, per_request):
        part = frame.iloc[start : start + per_request]
        answer = {"predictions": [1] * len(part), "probabilities": [[0.3, 0.7]] * len(part)}
        data = {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": part[features].to_csv(header=False, index=False),
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": json.dumps(answer),
                "encoding": "JSON",
            },
        }
        metadata = {
            "eventId": f"e{start}",
            "inferenceId": f"i{start}",
            "inferenceTime": "2026-11-28T10:00:00Z",
        }
        out.append(json.dumps({"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    features = list(example_settings().problem.features)
    for per_request in (1, 10):
        lines = records(args.rows, per_request, features)
        started = time.process_time()
        window = capture.decode(lines, features)
        seconds = time.process_time() - started
        per_minute = window.rows / seconds * 60
        print(
            f"{per_request:>2} row(s) per request: {window.rows} rows in {seconds:.2f} s of CPU = "
            f"{per_minute / 1e6:.2f} M rows/min ({per_minute / TARGET_ROWS_PER_MINUTE:.1f}x the 1M/min target)"
        )


if __name__ == "__main__":
    main()
