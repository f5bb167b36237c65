"""The gates every synth passes: cdk-nag's AWS Solutions checks and cfn-lint on the template.

cdk-nag 3.x runs as a CDK policy-validation plugin: an unacknowledged finding makes ``app.synth()`` raise.
Findings are acknowledged one by one, at the narrowest construct, with :func:`acknowledge` and a reason.
cfn-lint runs on the synthesized template afterwards; any error or warning fails the gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import Construct, IConstruct

#: cfn-lint rules we switch off, each with the reason. Keep this empty unless a finding is the CDK's own.
CFN_LINT_IGNORED: dict[str, str] = {}


class GateError(RuntimeError):
    """A gate found problems; the message lists them."""


#: The namespace the CDK gives the AWS Solutions plugin's findings (``AwsSolutions::AwsSolutions-S1``).
NAG_NAMESPACE = "AwsSolutions"


def acknowledge(scope: IConstruct, *finding_ids: str, reason: str) -> None:
    """Acknowledge cdk-nag findings (``Rule`` or ``Rule[Finding]``) on ``scope`` and below it.

    The ids are qualified with the plugin's namespace so that the CDK's own matching (exact, by
    qualified id) applies them; unqualified ids only work for some findings.
    """
    for finding_id in finding_ids:
        qualified = (
            finding_id if finding_id.startswith(f"{NAG_NAMESPACE}::") else f"{NAG_NAMESPACE}::{finding_id}"
        )
        cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=qualified, reason=reason))


def grantee_scope(grantee: iam.IGrantable) -> IConstruct:
    """Where cdk-nag reports the findings of a grant: the grantee's role (a construct) when it has one."""
    principal = grantee.grant_principal
    return cast(IConstruct, principal) if isinstance(principal, Construct) else cast(IConstruct, grantee)


def iam5_resource(resource: IConstruct, suffix: str = "/*") -> str:
    """The IAM5 finding id cdk-nag reports for ``<LogicalId.Arn>{suffix}`` in a grant."""
    logical_id = cdk.Stack.of(resource).get_logical_id(_cfn(resource))
    return f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>{suffix}]"


def _account_region(scope: IConstruct) -> tuple[str, str]:
    """Account and region the way cdk-nag prints them: literal in an env-specific stack, else pseudo."""
    stack = cdk.Stack.of(scope)
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    return account, region


def iam5_arn(scope: IConstruct, service: str, resource: str) -> str:
    """The IAM5 finding id for ``arn:{partition}:{service}:{region}:{account}:{resource}``."""
    account, region = _account_region(scope)
    return f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:{service}:{region}:{account}:{resource}]"


def iam5_asset_bucket(scope: IConstruct) -> str:
    """The IAM5 finding id for objects of the default synthesizer's asset bucket."""
    account, region = _account_region(scope)
    qualifier = cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER
    return (
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-{qualifier}-assets-{account}-{region}/*]"
    )


def iam5_actions(*actions: str) -> tuple[str, ...]:
    return tuple(f"AwsSolutions-IAM5[Action::{action}]" for action in actions)


def _cfn(construct: IConstruct) -> cdk.CfnResource:
    child = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    if not isinstance(child, cdk.CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return child


def ignore_redundant_depends_on(resource: IConstruct) -> None:
    """Silence cfn-lint's W3005 on one resource, through cfn-lint's own per-resource metadata.

    The CDK makes a function (or state machine) depend on its role *and* the role's default policy so
    that the policy exists before the first invocation; the DependsOn on the role is redundant with the
    GetAtt of its ARN, which is all W3005 says. We keep the CDK's ordering and silence only that rule,
    only on the resources the CDK builds this way.
    """
    _cfn(resource).add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})


def add_gates(app: cdk.App) -> None:
    """Register cdk-nag's AWS Solutions checks; they run during ``app.synth()``."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def lint_template(template: Path, *, region: str) -> list[str]:
    """cfn-lint findings (errors, warnings and informational) on one template, formatted one per line."""
    from cfnlint.api import ManualArgs, lint_file  # cfn-lint is slow to import; only gates need it

    config = ManualArgs(regions=[region], ignore_checks=sorted(CFN_LINT_IGNORED))
    return [
        f"{m.rule.id} {m.filename}:{m.linenumber} {m.message}" for m in lint_file(template, config=config)
    ]


def check_template(template: Path, *, region: str) -> None:
    """Raise :class:`GateError` when cfn-lint reports anything on ``template``."""
    findings = lint_template(template, region=region)
    if findings:
        raise GateError("cfn-lint found problems:\n" + "\n".join(findings))
