"""Lineage, MLMD-like: artifacts, the executions that produced and used them, and the edges between.

One DynamoDB table, single-table design (``pk``/``sk`` strings):

========================  ===============================  ==========================================
item                      pk                               sk
========================  ===============================  ==========================================
artifact                  ``A#{artifact id}``              ``#META``
execution                 ``E#{execution id}``             ``#META``
edge, artifact side       ``A#{artifact id}``              ``EVENT#{input|output}#{execution id}``
edge, execution side      ``E#{execution id}``             ``EVENT#{input|output}#{artifact id}``
========================  ===============================  ==========================================

Each edge is written on both sides (an adjacency list), so one Query answers "which executions made or
used this artifact" and another "what did this execution read and write"; no index is needed. Ids are
``{type}:{local id}`` (``upload:3f2a...``, ``training_set:run-42``) and writes are puts, so recording the
same fact twice (a retried Lambda) changes nothing.

Issue 4 adds models and deployments with the same calls: :data:`MODEL`, :data:`DEPLOYMENT` and
:data:`MONITOR_REPORT` are ready, and :meth:`LineageStore.record` takes any artifact type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import WriteRequestOutputTypeDef, WriteRequestTypeDef

# Artifact types.
UPLOAD = "upload"
CURATED_VERSION = "curated_version"
QUARANTINE = "quarantine"
FEATURE_VERSION = "feature_version"
TRAINING_SET = "training_set"
MODEL = "model"
DEPLOYMENT = "deployment"
MONITOR_REPORT = "monitor_report"
ARTIFACT_TYPES = (
    UPLOAD,
    CURATED_VERSION,
    QUARANTINE,
    FEATURE_VERSION,
    TRAINING_SET,
    MODEL,
    DEPLOYMENT,
    MONITOR_REPORT,
)
# Execution types.
PREPARE_DATA = "prepare_data"
BUILD_TRAINING_SET = "build_training_set"
INGEST_FEATURES = "ingest_features"
TRAIN_MODEL = "train_model"
DEPLOY_MODEL = "deploy_model"
ROLLBACK = "rollback"

META = "#META"
EventKind = Literal["input", "output"]
Direction = Literal["upstream", "downstream"]
_BATCH = 25  # DynamoDB's BatchWriteItem limit


def artifact_id(artifact_type: str, local_id: str) -> str:
    return f"{artifact_type}:{local_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Artifact:
    id: str
    type: str
    uri: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)


@dataclass(frozen=True)
class Execution:
    id: str
    type: str
    status: str = "COMPLETE"
    properties: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)


@dataclass(frozen=True)
class LineageEvent:
    execution_id: str
    artifact_id: str
    kind: EventKind


@dataclass
class LineageNode:
    """One node of a traced chain: an artifact or an execution, with the nodes one step further."""

    kind: Literal["artifact", "execution"]
    id: str
    type: str
    uri: str = ""
    children: list[LineageNode] = field(default_factory=list)


class LineageStore:
    """Records and reads lineage in one DynamoDB table. Pass the client (moto in tests)."""

    def __init__(self, table_name: str, *, client: DynamoDBClient | None = None) -> None:
        if client is None:
            from mlcycle import aws

            client = aws.client("dynamodb")
        self.table_name = table_name
        self._db = client

    # -- writing -----------------------------------------------------------------------------------

    def put_artifact(self, artifact: Artifact) -> None:
        self._write([_artifact_item(artifact)])

    def record(
        self, execution: Execution, inputs: Sequence[Artifact] = (), outputs: Sequence[Artifact] = ()
    ) -> None:
        """An execution with what it read and wrote: the nodes and both sides of every edge."""
        items = [_execution_item(execution)]
        for kind, artifacts in (("input", inputs), ("output", outputs)):
            for artifact in artifacts:
                items.append(_artifact_item(artifact))
                items.extend(_edge_items(LineageEvent(execution.id, artifact.id, kind)))  # type: ignore[arg-type]
        self._write(items)

    def _write(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), _BATCH):
            pending: Sequence[WriteRequestTypeDef | WriteRequestOutputTypeDef] = [
                {"PutRequest": {"Item": i}} for i in items[start : start + _BATCH]
            ]
            while pending:  # DynamoDB may hand back part of a batch under throttling
                answer = self._db.batch_write_item(RequestItems={self.table_name: pending})
                pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])

    # -- reading -----------------------------------------------------------------------------------

    def artifact(self, id: str) -> Artifact | None:
        item = self._get(f"A#{id}")
        if item is None:
            return None
        return Artifact(
            id=id,
            type=item["type"]["S"],
            uri=item.get("uri", {}).get("S", ""),
            properties=json.loads(item["properties"]["S"]),
            created_at=item["created_at"]["S"],
        )

    def execution(self, id: str) -> Execution | None:
        item = self._get(f"E#{id}")
        if item is None:
            return None
        return Execution(
            id=id,
            type=item["type"]["S"],
            status=item["status"]["S"],
            properties=json.loads(item["properties"]["S"]),
            created_at=item["created_at"]["S"],
        )

    def events_of_artifact(self, id: str) -> list[LineageEvent]:
        return [
            LineageEvent(execution_id=other, artifact_id=id, kind=kind)
            for kind, other in self._edges(f"A#{id}")
        ]

    def events_of_execution(self, id: str) -> list[LineageEvent]:
        return [
            LineageEvent(execution_id=id, artifact_id=other, kind=kind)
            for kind, other in self._edges(f"E#{id}")
        ]

    def resolve(self, ref: str) -> str | None:
        """An artifact id from a full id (``upload:abc``) or a bare local id tried under each type."""
        candidates = [ref] + [artifact_id(t, ref) for t in ARTIFACT_TYPES if not ref.startswith(f"{t}:")]
        return next((c for c in candidates if self._get(f"A#{c}") is not None), None)

    def _get(self, pk: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._db.get_item(
            TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": META}}, ConsistentRead=True
        ).get("Item")
        return item

    def _edges(self, pk: str) -> Iterator[tuple[EventKind, str]]:
        paginator = self._db.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :edge)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":edge": {"S": "EVENT#"}},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                _, kind, other = item["sk"]["S"].split("#", 2)
                yield kind, other  # type: ignore[misc]

    # -- tracing -----------------------------------------------------------------------------------

    def trace(self, id: str, direction: Direction, max_depth: int = 25) -> LineageNode:
        """The chain from artifact ``id`` upstream (what made it) or downstream (what it went into)."""
        return self._trace_artifact(id, direction, max_depth, set())

    def _trace_artifact(self, id: str, direction: Direction, depth: int, seen: set[str]) -> LineageNode:
        found = self.artifact(id)
        node = LineageNode("artifact", id, found.type if found else "?", found.uri if found else "")
        if depth <= 0 or id in seen:
            return node
        seen.add(id)
        # Upstream: executions that output this artifact; downstream: those that took it as input.
        via: EventKind = "output" if direction == "upstream" else "input"
        for event in self.events_of_artifact(id):
            if event.kind == via:
                node.children.append(self._trace_execution(event.execution_id, direction, depth - 1, seen))
        return node

    def _trace_execution(self, id: str, direction: Direction, depth: int, seen: set[str]) -> LineageNode:
        found = self.execution(id)
        node = LineageNode("execution", id, found.type if found else "?")
        want: EventKind = "input" if direction == "upstream" else "output"
        for event in self.events_of_execution(id):
            if event.kind == want:
                node.children.append(self._trace_artifact(event.artifact_id, direction, depth - 1, seen))
        return node


def render(root: Artifact | None, upstream: LineageNode, downstream: LineageNode) -> str:
    """The chain as an indented tree: the artifact, then what it came from and what it went into."""
    head = f"{upstream.id} ({upstream.type})" + (f" {upstream.uri}" if upstream.uri else "")
    lines = [head]
    if root is not None and root.properties:
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in sorted(root.properties.items())))
    for title, node, arrow in (("upstream", upstream, "<-"), ("downstream", downstream, "->")):
        lines.append(f"  {title}:" + ("" if node.children else " (none)"))
        for child in node.children:
            lines.extend(_render(child, arrow, 2))
    return "\n".join(lines)


def _render(node: LineageNode, arrow: str, indent: int) -> list[str]:
    label = f"{node.id} ({'execution ' if node.kind == 'execution' else ''}{node.type})"
    lines = ["  " * indent + f"{arrow} {label}" + (f" {node.uri}" if node.uri else "")]
    for child in node.children:
        lines.extend(_render(child, arrow, indent + 1))
    return lines


def _artifact_item(a: Artifact) -> dict[str, Any]:
    return {
        "pk": {"S": f"A#{a.id}"},
        "sk": {"S": META},
        "kind": {"S": "artifact"},
        "type": {"S": a.type},
        "uri": {"S": a.uri},
        "properties": {"S": json.dumps(a.properties, default=str, sort_keys=True)},
        "created_at": {"S": a.created_at},
    }


def _execution_item(e: Execution) -> dict[str, Any]:
    return {
        "pk": {"S": f"E#{e.id}"},
        "sk": {"S": META},
        "kind": {"S": "execution"},
        "type": {"S": e.type},
        "status": {"S": e.status},
        "properties": {"S": json.dumps(e.properties, default=str, sort_keys=True)},
        "created_at": {"S": e.created_at},
    }


def _edge_items(event: LineageEvent) -> list[dict[str, Any]]:
    return [
        {"pk": {"S": f"A#{event.artifact_id}"}, "sk": {"S": f"EVENT#{event.kind}#{event.execution_id}"}},
        {"pk": {"S": f"E#{event.execution_id}"}, "sk": {"S": f"EVENT#{event.kind}#{event.artifact_id}"}},
    ]


def model_id(model_package_arn: str) -> str:
    """A model version's artifact id: ``model:{group}/{version}`` from its package ARN."""
    return artifact_id(MODEL, model_package_arn.split(":model-package/", 1)[-1])


def record_model(
    store: LineageStore,
    *,
    training_job: str,
    training_set_id: str,
    model_package_arn: str,
    metrics: dict[str, float],
) -> None:
    """training set -> training run -> model version (the registry holds the rest of its story)."""
    store.record(
        Execution(
            artifact_id(TRAIN_MODEL, training_job), TRAIN_MODEL, properties={"training_job": training_job}
        ),
        inputs=[Artifact(artifact_id(TRAINING_SET, training_set_id), TRAINING_SET)],
        outputs=[Artifact(model_id(model_package_arn), MODEL, model_package_arn, {"metrics": metrics})],
    )


def record_deployment(
    store: LineageStore, *, model_package_arn: str, endpoint: str, endpoint_config: str
) -> None:
    """model version -> deploy -> endpoint configuration (a deployment is the config an endpoint serves)."""
    store.record(
        Execution(
            artifact_id(DEPLOY_MODEL, endpoint_config), DEPLOY_MODEL, properties={"endpoint": endpoint}
        ),
        inputs=[Artifact(model_id(model_package_arn), MODEL, model_package_arn)],
        outputs=[Artifact(artifact_id(DEPLOYMENT, endpoint_config), DEPLOYMENT, f"endpoint/{endpoint}")],
    )


def record_rollback(
    store: LineageStore, *, model_package_arn: str, endpoint: str, endpoint_config: str, reason: str
) -> None:
    """A deployment that was rolled back: model version -> rollback (with the reason) -> that config."""
    store.record(
        Execution(
            artifact_id(ROLLBACK, endpoint_config),
            ROLLBACK,
            properties={"endpoint": endpoint, "reason": reason},
        ),
        inputs=[Artifact(model_id(model_package_arn), MODEL, model_package_arn)],
        outputs=[Artifact(artifact_id(DEPLOYMENT, endpoint_config), DEPLOYMENT, f"endpoint/{endpoint}")],
    )
