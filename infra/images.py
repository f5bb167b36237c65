"""The SageMaker scikit-learn framework image for a version, in the stack's region.

SageMaker publishes the framework images from one ECR registry account per region. This map is the
``registries`` table of ``image_uri_config/sklearn.json`` in the SageMaker Python SDK (identical for every
scikit-learn version there); copying it keeps the SDK, ~1 GB of dependencies, off the synth path.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

SKLEARN_REGISTRIES: dict[str, str] = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "ca-west-1": "190319476487",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


def sklearn_image_uri(scope: Construct, version: str) -> str:
    """``{account}.dkr.ecr.{region}.{suffix}/sagemaker-scikit-learn:{version}-cpu-py3``.

    With a concrete region the URI is a plain string; an environment-agnostic stack gets a
    ``CfnMapping`` keyed by ``AWS::Region`` that CloudFormation resolves at deploy time.
    """
    stack = cdk.Stack.of(scope)
    tag = f"sagemaker-scikit-learn:{version}-cpu-py3"
    if not cdk.Token.is_unresolved(stack.region):
        account = SKLEARN_REGISTRIES.get(stack.region)
        if account is None:
            raise ValueError(f"no SageMaker scikit-learn image registry known for region {stack.region}")
        return f"{account}.dkr.ecr.{stack.region}.{stack.url_suffix}/{tag}"
    mapping = _mapping(stack)
    account = mapping.find_in_map(cdk.Aws.REGION, "account")
    return f"{account}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/{tag}"


def _mapping(stack: cdk.Stack) -> cdk.CfnMapping:
    existing = stack.node.try_find_child("SklearnImageRegistries")
    if isinstance(existing, cdk.CfnMapping):
        return existing
    return cdk.CfnMapping(
        stack,
        "SklearnImageRegistries",
        mapping={region: {"account": account} for region, account in SKLEARN_REGISTRIES.items()},
    )
