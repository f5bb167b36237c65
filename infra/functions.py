"""The one way we build Lambda functions: shared code asset, managed layers, explicit role and log group."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra import network
from infra.bundling import REPO_ROOT, lambda_code
from infra.gates import acknowledge, ignore_redundant_depends_on
from mlcycle.config import Settings
from mlcycle.security import VpcSettings

#: Reserved concurrency of a function unless its construct asks for another (settings can turn all off).
RESERVED_CONCURRENCY = 5
#: The error Lambda throws when a function's reserved concurrency is all in use: Step Functions tasks
#: retry it (the CDK's LambdaInvoke retries only Lambda's service errors).
THROTTLED = "Lambda.TooManyRequestsException"
#: Publisher account of AWS's managed "AWS SDK for pandas" layers in the commercial regions.
PANDAS_LAYER_ACCOUNT = "336392948345"

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs accepts only some retention periods; fail the synth early on any other."""
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"log_retention_days={days} is not one of {sorted(_RETENTION)}") from None


def encrypted_log_group(scope: Construct, id: str, *, settings: Settings, key: kms.IKey) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        id,
        retention=retention(settings.log_retention_days),
        encryption_key=key,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )


class FunctionFactory(Construct):
    """Holds what all functions share (code asset, layers, runtime) and builds each function alike.

    Attributes: ``code`` (the shared asset), ``layers``, ``runtime``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        source_root: Path = REPO_ROOT,
    ) -> None:
        super().__init__(scope, id)
        self._settings = settings
        self._key = key
        python = settings.functions.python
        self.runtime: lambda_.Runtime = getattr(lambda_.Runtime, f"PYTHON_{python.replace('.', '_')}")
        self.code = lambda_code(settings=settings, source_root=source_root)
        self.layers = [self._powertools_layer(python), self._pandas_layer(python)]

    def _powertools_layer(self, python: str) -> lambda_.ILayerVersion:
        # Resolved at deploy time from AWS's public parameter: a CloudFormation parameter, not a lookup.
        arn = ssm.StringParameter.value_for_string_parameter(
            self, f"/aws/service/powertools/python/x86_64/python{python}/latest"
        )
        return lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", arn)

    def _pandas_layer(self, python: str) -> lambda_.ILayerVersion:
        region = cdk.Stack.of(self).region
        name = f"AWSSDKPandas-Python{python.replace('.', '')}"
        version = self._settings.functions.pandas_layer_version
        arn = f"arn:aws:lambda:{region}:{PANDAS_LAYER_ACCOUNT}:layer:{name}:{version}"
        return lambda_.LayerVersion.from_layer_version_arn(self, "PandasLayer", arn)

    def function(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        description: str,
        environment: Mapping[str, str],
        on_failure: lambda_.IDestination | None = None,
        retry_attempts: int | None = None,
        reserved_concurrency: int = RESERVED_CONCURRENCY,
    ) -> lambda_.Function:
        """One function in ``scope`` with its own role (logs scoped to its own log group) and log group,
        its environment encrypted with the platform's key, in the settings' VPC if any.

        ``reserved_concurrency`` (unless the settings turn reservations off): at most this many run at
        once, and as many are always available to it. Step Functions tasks that invoke it retry
        ``Lambda.TooManyRequestsException`` (:data:`THROTTLED`); asynchronous invocations wait in Lambda's
        queue.
        """
        settings = self._settings
        log_group = encrypted_log_group(scope, f"{id}Logs", settings=settings, key=self._key)
        role = iam.Role(scope, f"{id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        # The log group's own grant instead of the AWSLambdaBasicExecutionRole managed policy (cdk-nag IAM4).
        log_group.grant_write(role)
        fn = lambda_.Function(
            scope,
            id,
            code=self.code,
            handler=handler,
            runtime=self.runtime,
            architecture=lambda_.Architecture.X86_64,
            description=description,
            memory_size=settings.functions.memory_mb,
            timeout=cdk.Duration.seconds(settings.functions.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            layers=self.layers,
            role=role,
            environment=dict(environment),
            on_failure=on_failure,
            retry_attempts=retry_attempts,
            environment_encryption=self._key,
            reserved_concurrent_executions=(
                reserved_concurrency if settings.security.reserved_concurrency else None
            ),
        )
        # Lambda decrypts the environment with the execution role's permissions at each cold start.
        self._key.grant_decrypt(role)
        if settings.security.vpc is not None:
            self._place_in_vpc(fn, role, settings.security.vpc)
        _acknowledge_function_findings(fn, role)
        ignore_redundant_depends_on(fn)
        return fn

    @staticmethod
    def _place_in_vpc(fn: lambda_.Function, role: iam.Role, vpc: VpcSettings) -> None:
        """The settings' existing subnets and security groups (ids, not lookups: the synth calls no AWS),
        and AWSLambdaVPCAccessExecutionRole's network-interface permissions, scoped to them."""
        cfn = cast(lambda_.CfnFunction, fn.node.default_child)
        cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
            subnet_ids=list(vpc.subnet_ids), security_group_ids=list(vpc.security_group_ids)
        )
        network.grant_network_interfaces(role, vpc, network.LAMBDA_INTERFACE_ACTIONS)


def _acknowledge_function_findings(fn: lambda_.Function, role: iam.Role) -> None:
    acknowledge(
        fn,
        "AwsSolutions-L1",
        reason="The runtime is a setting (functions.python) chosen to match the managed Powertools and "
        "AWS SDK for pandas layers we depend on; it is upgraded deliberately, not automatically.",
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        reason="Active X-Ray tracing needs xray:PutTraceSegments/PutTelemetryRecords, which support no "
        "resource-level permissions (the CDK adds them with Resource '*').",
    )
