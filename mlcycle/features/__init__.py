"""The feature store: feature views as settings, offline Parquet + Glue, online DynamoDB, point-in-time joins.

``FeatureStore`` is the facade; ``OfflineStore`` / ``OnlineStore`` its backends; ``sql.build`` the one
point-in-time SQL builder (DuckDB and Athena); ``DuckDBEngine`` / ``AthenaEngine`` run it;
``SortedSearchEngine`` is the embedded default that joins the same way without SQL.
"""

from mlcycle.features.engines import AthenaEngine, DuckDBEngine, QueryFailedError, s3_filesystem
from mlcycle.features.ingest import IngestResult, ingest_curated, ingest_dataset, ingest_rows
from mlcycle.features.offline import LocalObjects, OfflineStore, S3Objects
from mlcycle.features.online import OnlineStore
from mlcycle.features.search import SortedSearchEngine
from mlcycle.features.store import FeatureStore, FeatureStoreError

__all__ = [
    "AthenaEngine",
    "DuckDBEngine",
    "FeatureStore",
    "FeatureStoreError",
    "IngestResult",
    "LocalObjects",
    "OfflineStore",
    "OnlineStore",
    "QueryFailedError",
    "S3Objects",
    "SortedSearchEngine",
    "ingest_curated",
    "ingest_dataset",
    "ingest_rows",
    "s3_filesystem",
]
