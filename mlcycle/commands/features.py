"""``mlcycle features list | ingest DATASET | compact | historical ENTITY_CSV --out FILE | online ID...``.

Works against the running embedded AWS (``mlcycle local up``) or the deployed stack, through
:func:`mlcycle.commands.connect.connect`; each action is one call into :class:`mlcycle.features.FeatureStore`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mlcycle.config import Settings


def _store(settings: Settings) -> tuple[Any, Any]:
    from mlcycle.application.connect import connect
    from mlcycle.features import FeatureStore

    connection = connect(settings)
    platform = connection.platform
    store = FeatureStore.from_settings(
        settings,
        features_bucket=platform.features_bucket,
        online_table=platform.online_table or None,
        # The data lake names its Glue database after the prefix (infra/data_lake.py).
        glue_database=settings.prefix.replace("-", "_"),
        s3=connection.client("s3"),
        glue=connection.client("glue"),
        dynamodb=connection.client("dynamodb"),
    )
    return store, connection


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    for view in settings.feature_views:
        ttl = f"{view.ttl_seconds}s" if view.ttl_seconds else "none"
        features = ", ".join(f"{f.name}:{f.type}" for f in view.features)
        print(
            f"{view.name}  source={view.source} keys={','.join(view.entity_keys)} "
            f"time={view.event_timestamp} ttl={ttl} online={'yes' if view.online else 'no'}"
        )
        print(f"    {features}")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.features import ingest_dataset

    store, connection = _store(settings)
    results = ingest_dataset(
        store, args.dataset, s3=connection.client("s3"), curated_bucket=connection.platform.curated_bucket
    )
    if not results:
        print(f"no curated data for dataset {args.dataset!r}")
        return 1
    for result in results:
        for view in result.views:
            print(
                f"{result.batch_id} -> {view.view}: {view.rows} rows in {len(view.partitions)} partitions, "
                f"online {view.online_written} written / {view.online_stale} older, "
                f"snapshot {view.snapshot_rows} rows"
            )
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    store, _ = _store(settings)
    for name in args.view or [v.name for v in store.views]:
        view = store.view(name)
        contract = store.contract(view)
        was = "current" if store.offline.snapshot(view, contract) is not None else "stale or missing"
        started = time.perf_counter()
        rows = store.offline.compact(view, contract)
        print(f"{name}: snapshot rebuilt, {rows} rows in {time.perf_counter() - started:.2f}s (was {was})")
    return 0


def cmd_historical(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    store, _ = _store(settings)
    entity = pd.read_csv(args.entity_csv, parse_dates=[args.timestamp_column])
    table = store.get_historical_features(
        entity,
        args.view or None,
        timestamp_column=args.timestamp_column,
        leakage_guard=not args.no_leakage_guard,
        full_feature_names=args.full_feature_names,
    )
    out = Path(args.out)
    if out.suffix == ".parquet":
        pq.write_table(table, out)
    else:
        pa_csv.write_csv(table, out)
    print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {out}")
    return 0


def cmd_online(args: argparse.Namespace, settings: Settings) -> int:
    store, _ = _store(settings)
    frame = store.get_online_features(args.entity_ids, args.view or None)
    print(frame.to_string(index=False))
    return 0


def add_parser(subparsers: Any) -> None:
    features = subparsers.add_parser("features", help="the feature store: views, ingestion, retrieval")
    actions = features.add_subparsers(dest="features_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the feature views declared in the settings")
    listing.set_defaults(func=cmd_list)

    ingest = actions.add_parser("ingest", help="(re)ingest every curated upload of a dataset (idempotent)")
    ingest.add_argument("dataset")
    ingest.set_defaults(func=cmd_ingest)

    compact = actions.add_parser(
        "compact",
        help="rebuild the views' snapshots (ingestion does it after every batch; joins read partitions "
        "while a snapshot is stale)",
    )
    compact.add_argument("--view", action="append", help="only this view (repeatable; default: all)")
    compact.set_defaults(func=cmd_compact)

    historical = actions.add_parser(
        "historical", help="point-in-time features for entity rows (CSV with keys and a timestamp column)"
    )
    historical.add_argument("entity_csv")
    historical.add_argument("--out", required=True, help="output file: .parquet, else CSV")
    historical.add_argument("--timestamp-column", default="event_timestamp")
    historical.add_argument("--view", action="append", help="only this view (repeatable; default: all)")
    historical.add_argument("--full-feature-names", action="store_true", help="name columns view__feature")
    historical.add_argument(
        "--no-leakage-guard", action="store_true", help="also see rows created after the entity's time"
    )
    historical.set_defaults(func=cmd_historical)

    online = actions.add_parser("online", help="the latest stored values of entities")
    online.add_argument("entity_ids", nargs="+")
    online.add_argument("--view", action="append", help="only this view (repeatable; default: all online)")
    online.set_defaults(func=cmd_online)
