"""The lineage table and the one grant its recorders get."""

from __future__ import annotations

from aws_cdk import aws_kms as kms

from infra.lineage import Lineage
from tests.infra.bare import arn_of, bare_stack, granted, grantee


def test_grant_record_reads_and_writes_the_table_with_its_key() -> None:
    # GIVEN the lineage table alone in a stack (with its key) and a role
    stack = bare_stack()
    key = kms.Key(stack, "Key")
    lineage, role = Lineage(stack, "Lineage", key=key), grantee(stack)
    # WHEN the role is granted recording lineage
    lineage.grant_record(role)
    # THEN it may read and write items of that table, decrypting and encrypting with its key, and no more
    table, key_arn = arn_of(lineage.table), arn_of(key)
    allowed = granted(stack, role)
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem"} <= set(
        allowed
    )
    assert {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"} <= set(allowed)
    assert all(allowed[a] == {table} for a in allowed if a.startswith("dynamodb:"))
    assert all(allowed[a] == {key_arn} for a in allowed if a.startswith("kms:"))
    assert {a.split(":")[0] for a in allowed} == {"dynamodb", "kms"}
