"""Metadata: the lineage table (artifacts, executions and the edges between them, one table)."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.tables import encrypted_table


class Lineage(Construct):
    """Attributes: ``table`` (single-table design of mlcycle/lineage.py: ``pk``/``sk`` strings)."""

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, id)
        self.table: dynamodb.Table = encrypted_table(
            self, "Table", key=key, partition_key="pk", sort_key="sk"
        )

    def grant_record(self, grantee: iam.IGrantable) -> iam.Grant:
        """Reading and writing lineage records (the table and its key)."""
        return self.table.grant_read_write_data(grantee)
