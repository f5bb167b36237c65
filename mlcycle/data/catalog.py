"""The Glue catalog of curated data: one table per dataset, one partition per ingest date.

The table's shape is derived from the dataset contract here, and both the CDK app (which declares the
table) and the prepare step (which registers partitions) use these functions, so they cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlcycle.config import ColumnType, DatasetContract

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import ColumnTypeDef, StorageDescriptorTypeDef

PARTITION_KEY = "ingest_date"
GLUE_TYPES: dict[ColumnType, str] = {
    "string": "string",
    "int": "bigint",
    "float": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
}
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def table_name(dataset: str) -> str:
    """The curated table of a dataset is named after it (``SELECT * FROM churn``)."""
    return dataset


def curated_prefix(dataset: str) -> str:
    return f"curated/{dataset}/"


def curated_key(dataset: str, ingest_date: str, name: str) -> str:
    return f"{curated_prefix(dataset)}{PARTITION_KEY}={ingest_date}/{name}"


def columns(contract: DatasetContract) -> list[ColumnTypeDef]:
    return [{"Name": c.name, "Type": GLUE_TYPES[c.type]} for c in contract.columns]


def storage_descriptor(contract: DatasetContract, location: str) -> StorageDescriptorTypeDef:
    """Glue's StorageDescriptor (API shape) of curated Parquet at ``location``."""
    return {
        "Columns": columns(contract),
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
    }


class CatalogError(RuntimeError):
    """Glue refused a partition for a reason other than it already existing."""


def register_partition(
    glue: GlueClient, database: str, contract: DatasetContract, bucket: str, ingest_date: str
) -> bool:
    """Add the ``ingest_date`` partition of a dataset's table; ``False`` when it already existed."""
    location = f"s3://{bucket}/{curated_prefix(contract.name)}{PARTITION_KEY}={ingest_date}/"
    answer = glue.batch_create_partition(
        DatabaseName=database,
        TableName=table_name(contract.name),
        PartitionInputList=[
            {"Values": [ingest_date], "StorageDescriptor": storage_descriptor(contract, location)}
        ],
    )
    errors = [e["ErrorDetail"] for e in answer.get("Errors", [])]
    unexpected = [e for e in errors if e.get("ErrorCode") != "AlreadyExistsException"]
    if unexpected:
        raise CatalogError(f"cannot register {contract.name} {PARTITION_KEY}={ingest_date}: {unexpected}")
    return not errors
