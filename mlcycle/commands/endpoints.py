"""``mlcycle endpoints list | show | shadow | invoke | rollback | delete``: the endpoints that serve the
models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlcycle.config import Settings

#: Content types by file suffix, for ``invoke`` without ``--content-type``.
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".npy": "application/x-npy",
}


def _sagemaker(settings: Settings, service: str = "sagemaker") -> Any:
    from mlcycle.application.connect import connect

    return connect(settings).client(service)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    found = _sagemaker(settings).list_endpoints(SortBy="Name", MaxResults=100)["Endpoints"]
    if not found:
        print("no endpoints")
        return 0
    print(f"{'endpoint':<40} {'status':<12} modified")
    for e in found:
        print(f"{e['EndpointName']:<40} {e['EndpointStatus']:<12} {e['LastModifiedTime']:%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import deployment, registry

    sagemaker = _sagemaker(settings)
    endpoint = sagemaker.describe_endpoint(EndpointName=args.name)
    print(f"endpoint   {endpoint['EndpointName']} ({endpoint['EndpointStatus']})")
    print(f"config     {endpoint['EndpointConfigName']}")
    for variant in endpoint.get("ProductionVariants", []):
        weight = variant.get("CurrentWeight", variant.get("DesiredWeight", "-"))
        count = variant.get("CurrentInstanceCount", "-")
        print(f"variant    {variant['VariantName']}: weight {weight}, instances {count}")
    for variant in endpoint.get("ShadowProductionVariants", []):
        weight = variant.get("CurrentWeight", variant.get("DesiredWeight", "-"))
        print(f"shadow     {variant['VariantName']}: weight {weight} (a copy of traffic; never answers)")
    package = deployment.package_of(sagemaker, endpoint["EndpointConfigName"])
    if package:
        described = sagemaker.describe_model_package(ModelPackageName=package)
        metadata = described.get("CustomerMetadataProperties", {})
        print(f"model      version {package.rsplit('/', 1)[-1]} ({package})")
        print(f"deployment {metadata.get(registry.DEPLOYMENT_PROPERTY, 'in progress or not concluded')}")
    if endpoint.get("FailureReason"):
        print(f"last issue {endpoint['FailureReason']}")
    return 0


def cmd_shadow(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import shadow
    from mlcycle.application.connect import connect

    if args.name != settings.endpoint_name:
        raise LookupError(f"{args.name} is not this project's endpoint ({settings.endpoint_name})")
    connection = connect(settings)
    comparison = shadow.compare(
        settings,
        sagemaker=connection.client("sagemaker"),
        s3=connection.client("s3"),
        cloudwatch=connection.client("cloudwatch"),
        capture_uri=f"s3://{connection.platform.monitoring_bucket}/capture",
    )
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(comparison), default=str, indent=2))
        return 0
    for line in comparison.lines():
        print(line)
    for row in comparison.disagreements:
        print(f"  differs  request {row['request']} row {row['row']}: {row['champion']} vs {row['shadow']}")
    return 0


def cmd_invoke(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    content_type = args.content_type or CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise ValueError(f"cannot tell the content type of {path.name}: pass --content-type")
    runtime = _sagemaker(settings, "sagemaker-runtime")
    try:
        answer = runtime.invoke_endpoint(
            EndpointName=args.name, ContentType=content_type, Accept=args.accept, Body=path.read_bytes()
        )
    except runtime.exceptions.ModelError as error:
        response = error.response
        print(
            f"model error {response.get('OriginalStatusCode', '')}: {response.get('OriginalMessage', error)}",
            file=sys.stderr,
        )
        return 1
    sys.stdout.buffer.write(answer["Body"].read())
    sys.stdout.flush()
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import deployment

    if args.name != settings.endpoint_name:
        raise ValueError(f"{args.name} is not this platform's endpoint ({settings.endpoint_name})")
    result = deployment.rollback(settings, sagemaker=_sagemaker(settings))
    model = result.model_package_arn or "its model"
    print(f"{result.endpoint_name} is returning to {result.endpoint_config_name} ({model})")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    _sagemaker(settings).delete_endpoint(EndpointName=args.name)
    print(f"deleted {args.name} (it no longer bills; the next approval creates it again)")
    return 0


def add_parser(subparsers: Any) -> None:
    endpoints = subparsers.add_parser("endpoints", help="the endpoints that serve the models")
    actions = endpoints.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every endpoint and its status").set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="variants, weights, the model version and its last deployment")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)
    invoke = actions.add_parser("invoke", help="send FILE to the endpoint and print the answer")
    invoke.add_argument("name")
    invoke.add_argument("file", help="the request body (.csv, .json, .jsonl or .npy, or pass --content-type)")
    invoke.add_argument("--content-type", default=None, help="default: by the file's suffix")
    invoke.add_argument(
        "--accept", default="application/json", help="answer format (default: application/json)"
    )
    invoke.set_defaults(func=cmd_invoke)
    shadowing = actions.add_parser(
        "shadow",
        help="compare the shadowing challenger with the champion (agreement, probability gap, latency, "
        "errors) on the same live requests, before approving or rejecting it",
    )
    shadowing.add_argument("name")
    shadowing.add_argument("--json", action="store_true", help="print the comparison as JSON")
    shadowing.set_defaults(func=cmd_shadow)
    rollback = actions.add_parser("rollback", help="return the endpoint to the model it served before")
    rollback.add_argument("name")
    rollback.set_defaults(func=cmd_rollback)
    delete = actions.add_parser(
        "delete", help="delete the endpoint (its model versions stay in the registry)"
    )
    delete.add_argument("name")
    delete.set_defaults(func=cmd_delete)
