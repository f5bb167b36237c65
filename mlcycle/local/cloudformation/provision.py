"""Provision the platform into the embedded AWS from the synthesized CDK app (cdk.out).

moto's own CloudFormation skips or fakes several resource types the platform needs (model package
groups, subscriptions, alarms, CDK custom resources hang), so this walks the template itself: uploads
the file assets to the bootstrap bucket as ``cdk deploy`` would, resolves parameters, conditions and
intrinsics, and creates each resource in dependency order with the same API calls CloudFormation makes.
A resource type it does not know is an error: nothing is silently skipped.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcycle.local.cloudformation import resources
from mlcycle.local.cloudformation.provisioner import Provisioner, ensure_bucket
from mlcycle.local.cloudformation.template import Created, Scope, TemplateError, creation_order, resolve

BOOTSTRAP_QUALIFIER = "hnb659fds"
#: Public SSM parameters that AWS provides and templates may read at deploy time.
PUBLIC_PARAMETERS = {
    "/cdk-bootstrap/hnb659fds/version": "30",
}
POWERTOOLS_PREFIX = "/aws/service/powertools/"


@dataclass
class Stack:
    """What provisioning created: logical id -> physical id, and the stack's outputs."""

    name: str
    resources: dict[str, Created] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def physical(self, logical_prefix: str) -> str:
        matches = [k for k in self.resources if k.startswith(logical_prefix)]
        if len(matches) != 1:
            raise KeyError(f"{logical_prefix!r} matches {matches}")
        return self.resources[matches[0]].ref

    def of_type(self, cfn_type: str) -> dict[str, Created]:
        return {k: v for k, v in self.resources.items() if self.types[k] == cfn_type}

    def to_json(self) -> str:
        body = {
            "name": self.name,
            "resources": {
                k: {"type": self.types[k], "ref": v.ref, "attrs": v.attrs} for k, v in self.resources.items()
            },
            "outputs": self.outputs,
        }
        return json.dumps(body, indent=2, default=str)


def upload_assets(p: Provisioner, assembly: Path, stack_name: str) -> None:
    """Do what ``cdk deploy`` does with file assets: zip directories and put them in the asset bucket."""
    manifest = json.loads((assembly / f"{stack_name}.assets.json").read_text())
    s3 = p.client("s3")
    for asset in manifest.get("files", {}).values():
        source = assembly / asset["source"]["path"]
        body = _package(source, asset["source"].get("packaging", "file"), p.work)
        for dest in asset["destinations"].values():
            bucket = _placeholders(dest["bucketName"], p)
            ensure_bucket(s3, bucket, p.region)
            s3.upload_file(str(body), bucket, _placeholders(dest["objectKey"], p))


def _placeholders(text: str, p: Provisioner) -> str:
    return (
        text.replace("${AWS::AccountId}", p.account)
        .replace("${AWS::Region}", p.region)
        .replace("${AWS::Partition}", "aws")
    )


def _package(source: Path, packaging: str, work: Path) -> Path:
    if packaging == "file":
        return source
    if packaging != "zip":
        raise TemplateError(f"asset packaging {packaging!r} is not supported")
    target = work / f"{source.name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(source).as_posix())
    return target


def _public_parameter(p: Provisioner, name: str) -> str | None:
    """A stand-in for a public SSM parameter of AWS (moto reserves ``/aws/`` names: none is stored)."""
    if name in PUBLIC_PARAMETERS:
        return PUBLIC_PARAMETERS[name]
    if name.startswith(POWERTOOLS_PREFIX):  # .../python/x86_64/python3.13/latest
        runtime = name.split("/")[-2].replace(".", "")
        return f"arn:aws:lambda:{p.region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-{runtime}-x86_64:1"
    return None


def _parameters(p: Provisioner, template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    ssm = p.client("ssm")
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        value = given.get(name, spec.get("Default"))
        if value is None:
            raise TemplateError(f"parameter {name} has no default and no value was given")
        if spec.get("Type", "").startswith("AWS::SSM::Parameter::Value"):
            public = _public_parameter(p, value)
            value = public if public is not None else ssm.get_parameter(Name=value)["Parameter"]["Value"]
        values[name] = value
    return values


def provision(
    assembly: Path,
    stack_name: str,
    *,
    endpoint_url: str,
    region: str,
    account: str,
    parameters: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Stack:
    """Create everything ``{stack_name}.template.json`` in ``assembly`` describes."""
    template = json.loads((assembly / f"{stack_name}.template.json").read_text())
    p = Provisioner(stack_name, region, account, endpoint_url)
    try:
        upload_assets(p, assembly, stack_name)
        pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": p.arn("cloudformation", f"stack/{stack_name}/local"),
            "AWS::NotificationARNs": "",
        }
        scope = Scope(template=template, pseudo=pseudo, parameters=_parameters(p, template, parameters or {}))
        stack = Stack(name=stack_name)
        creators = resources.CREATORS
        declared = template["Resources"]
        for logical_id in creation_order(declared):
            body = declared[logical_id]
            if "Condition" in body and not scope.condition(body["Condition"]):
                continue
            cfn_type = body["Type"]
            creator = creators.get(cfn_type) or (
                creators["Custom::*"] if cfn_type.startswith("Custom::") else None
            )
            if creator is None:
                raise TemplateError(f"{logical_id}: resource type {cfn_type} cannot be provisioned locally")
            props = resolve(body.get("Properties", {}), scope)
            props["__type"] = cfn_type
            created = creator(p, logical_id, props)
            scope.resources[logical_id] = stack.resources[logical_id] = created
            stack.types[logical_id] = cfn_type
            progress(f"{cfn_type} {logical_id}")
        for call in p.deferred:
            call()
        stack.outputs = {k: resolve(v["Value"], scope) for k, v in template.get("Outputs", {}).items()}
        return stack
    finally:
        shutil.rmtree(p.work, ignore_errors=True)
