"""``mlcycle models list | show | approve | reject | compare``: the model registry."""

from __future__ import annotations

import argparse
from typing import Any, Literal

from mlcycle.config import Settings


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import registry
    from mlcycle.application.connect import connect

    sagemaker = connect(settings).client("sagemaker")
    found = registry.versions(sagemaker, settings.model_package_group)
    if not found:
        print(f"no versions in {settings.model_package_group}")
        return 0
    metric = settings.problem.primary_metric
    champion = next((v.version for v in found if v.approval_status == registry.APPROVED), None)
    print(f"{'':2}{'version':>7}  {'status':<22}{metric:>10}  created")
    for v in found:
        mark = "* " if v.version == champion else "  "
        print(f"{mark}{v.version:>7}  {v.approval_status:<22}{_fmt(v.metrics.get(metric)):>10}  {v.created}")
    print("* champion: the newest approved version, the one that serves")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import registry
    from mlcycle.application.connect import connect

    v = registry.get_version(
        connect(settings).client("sagemaker"), settings.model_package_group, args.version
    )
    print(f"version {v.version} ({v.approval_status})\n  arn: {v.arn}\n  model: {v.model_data_url}")
    if v.description:
        print(f"  note: {v.description}")
    print("  metrics:")
    for name, value in sorted(v.metrics.items()):
        print(f"    {name:<12} {value:.4f}")
    print("  lineage:")
    for name, text in sorted(v.lineage.items()):
        print(f"    {name:<22} {text}")
    if v.model_tests:
        print(f"  tests: {v.model_tests}")
    for name, uri in sorted(v.reports.items()):
        print(f"  {name + ':':<12} {uri}")
    return 0


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import registry
    from mlcycle.application.connect import connect

    status: Literal["Approved", "Rejected"] = (
        registry.APPROVED if args.action == "approve" else registry.REJECTED
    )
    sagemaker = connect(settings).client("sagemaker")
    v = registry.set_approval(sagemaker, settings.model_package_group, args.version, status, args.reason)
    print(f"version {v.version} is now {v.approval_status}")
    if status == registry.APPROVED:
        print(f"its approval event deploys it to {settings.endpoint_name}")
    return 0


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import registry
    from mlcycle.application.connect import connect

    sagemaker = connect(settings).client("sagemaker")
    a = registry.get_version(sagemaker, settings.model_package_group, args.a)
    b = registry.get_version(sagemaker, settings.model_package_group, args.b)
    print(f"{'metric':<12}{'v' + str(a.version):>10}{'v' + str(b.version):>10}{'change':>10}")
    for name, left, right, delta in registry.compare(a, b):
        print(f"{name:<12}{_fmt(left):>10}{_fmt(right):>10}{_fmt(delta):>10}")
    return 0


def add_parser(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="the model registry: versions, approval, comparison")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, newest first; * marks the champion").set_defaults(
        func=cmd_list
    )
    show = actions.add_parser("show", help="one version's metrics and lineage")
    show.add_argument("version", help="a version number, 'champion', or a model package ARN")
    show.set_defaults(func=cmd_show)
    for action, text in (
        ("approve", "approve a version (it is then deployed)"),
        ("reject", "reject a version"),
    ):
        decide = actions.add_parser(action, help=text)
        decide.add_argument("version", help="a version number or a model package ARN")
        decide.add_argument(
            "--reason", default=f"{action}d with the mlcycle CLI", help="recorded with the decision"
        )
        decide.set_defaults(func=cmd_decide)
    comp = actions.add_parser("compare", help="two versions' metrics side by side")
    comp.add_argument("a", help="a version number, 'champion', or an ARN")
    comp.add_argument("b", help="a version number, 'champion', or an ARN")
    comp.set_defaults(func=cmd_compare)
