"""One function per CloudFormation resource type: the API calls CloudFormation makes to create it.

Each takes the resolved properties and returns what ``Ref`` and ``Fn::GetAtt`` give for it.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

from mlcycle.local.cloudformation.provisioner import Provisioner, ensure_bucket
from mlcycle.local.cloudformation.template import Created, TemplateError

Creator = Callable[[Provisioner, str, dict[str, Any]], Created]
CREATORS: dict[str, Creator] = {}


def creates(*types: str) -> Callable[[Creator], Creator]:
    def register(fn: Creator) -> Creator:
        for t in types:
            CREATORS[t] = fn
        return fn

    return register


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", [])]


@creates("AWS::KMS::Key")
def _kms_key(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    kms = p.client("kms")
    key = kms.create_key(
        Description=props.get("Description", logical_id), Policy=json.dumps(props["KeyPolicy"])
    )
    key_id = key["KeyMetadata"]["KeyId"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_id)
    return Created(key_id, {"Arn": key["KeyMetadata"]["Arn"], "KeyId": key_id})


@creates("AWS::KMS::Alias")
def _kms_alias(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    p.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    return Created(props["AliasName"])


@creates("AWS::S3::Bucket")
def _bucket(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    s3 = p.client("s3")
    name = props.get("BucketName") or p.physical_name(logical_id, 63, lower=True)
    ensure_bucket(s3, name, p.region)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    if "BucketEncryption" in props:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    if "LifecycleConfiguration" in props:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=_lifecycle(props))
    if "LoggingConfiguration" in props:
        log = props["LoggingConfiguration"]
        target = {"TargetBucket": log["DestinationBucketName"], "TargetPrefix": log.get("LogFilePrefix", "")}
        status = {"LoggingEnabled": target}
        p.deferred.append(lambda: s3.put_bucket_logging(Bucket=name, BucketLoggingStatus=status))
    if _tags(props):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)})
    arn = f"arn:aws:s3:::{name}"
    domain = f"{name}.s3.amazonaws.com"
    return Created(
        name, {"Arn": arn, "DomainName": domain, "RegionalDomainName": f"{name}.s3.{p.region}.amazonaws.com"}
    )


def _lifecycle(props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle shape -> the S3 API's (the names differ)."""
    rules: list[dict[str, Any]] = []
    for rule in props["LifecycleConfiguration"]["Rules"]:
        api: dict[str, Any] = {"ID": rule.get("Id", f"rule{len(rules)}"), "Status": rule["Status"]}
        api["Filter"] = {"Prefix": rule.get("Prefix", "")}
        if "ExpirationInDays" in rule:
            api["Expiration"] = {"Days": rule["ExpirationInDays"]}
        if "NoncurrentVersionExpiration" in rule:
            api["NoncurrentVersionExpiration"] = {
                "NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
            }
        if "AbortIncompleteMultipartUpload" in rule:
            days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
        transitions = rule.get("Transitions", [])
        if transitions:
            api["Transitions"] = [
                {"Days": t["TransitionInDays"], "StorageClass": t["StorageClass"]} for t in transitions
            ]
        rules.append(api)
    return {"Rules": rules}


@creates("AWS::S3::BucketPolicy")
def _bucket_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    p.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
    return Created(logical_id)


@creates("Custom::S3BucketNotifications")
def _bucket_notifications(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    """CDK's notifications custom resource: do what its handler does, put the configuration."""
    config = props["NotificationConfiguration"]
    p.client("s3").put_bucket_notification_configuration(
        Bucket=props["BucketName"], NotificationConfiguration=config
    )
    return Created(logical_id)


@creates("Custom::*")
def _custom(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    raise TemplateError(f"{logical_id}: custom resource {props['__type']} has no local implementation")


@creates("AWS::IAM::Role")
def _role(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    iam = p.client("iam")
    name = props.get("RoleName") or p.physical_name(logical_id, 64)
    role = iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
    )
    for arn in props.get("ManagedPolicyArns", []):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    return Created(name, {"Arn": role["Role"]["Arn"], "RoleId": role["Role"]["RoleId"]})


@creates("AWS::IAM::Policy")
def _policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    iam = p.client("iam")
    for role in props.get("Roles", []):
        iam.put_role_policy(
            RoleName=role, PolicyName=props["PolicyName"], PolicyDocument=json.dumps(props["PolicyDocument"])
        )
    return Created(props["PolicyName"])


@creates("AWS::IAM::ManagedPolicy")
def _managed_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    iam = p.client("iam")
    name = props.get("ManagedPolicyName") or p.physical_name(logical_id, 128)
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(props["PolicyDocument"]))["Policy"][
        "Arn"
    ]
    for role in props.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    return Created(arn)


@creates("AWS::Logs::LogGroup")
def _log_group(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    logs = p.client("logs")
    name = props.get("LogGroupName") or p.physical_name(logical_id, 512)
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return Created(name, {"Arn": p.arn("logs", f"log-group:{name}:*")})


@creates("AWS::SQS::Queue")
def _queue(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    sqs = p.client("sqs")
    name = props.get("QueueName") or p.physical_name(logical_id, 80)
    attrs: dict[str, str] = {
        k: str(props[k])
        for k in ("MessageRetentionPeriod", "VisibilityTimeout", "KmsMasterKeyId")
        if k in props
    }
    if "RedrivePolicy" in props:
        attrs["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return Created(url, {"Arn": p.arn("sqs", name), "QueueName": name, "QueueUrl": url})


@creates("AWS::SQS::QueuePolicy")
def _queue_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    for url in props["Queues"]:
        p.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
        )
    return Created(logical_id)


@creates("AWS::SNS::Topic")
def _topic(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    attrs = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
    name = props.get("TopicName") or p.physical_name(logical_id, 256)
    arn = p.client("sns").create_topic(Name=name, Attributes=attrs)["TopicArn"]
    for sub in props.get("Subscription", []):
        p.client("sns").subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
    return Created(arn, {"TopicArn": arn, "TopicName": name})


@creates("AWS::SNS::TopicPolicy")
def _topic_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    for arn in props["Topics"]:
        p.client("sns").set_topic_attributes(
            TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
        )
    return Created(logical_id)


@creates("AWS::SNS::Subscription")
def _subscription(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    attrs: dict[str, str] = {k: json.dumps(props[k]) for k in ("FilterPolicy", "RedrivePolicy") if k in props}
    if "RawMessageDelivery" in props:
        attrs["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
    sub = p.client("sns").subscribe(
        TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"], Attributes=attrs
    )
    return Created(sub["SubscriptionArn"])


@creates("AWS::Lambda::Function")
def _function(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("FunctionName") or p.physical_name(logical_id, 64)
    code = props["Code"]
    kwargs: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": props.get("Runtime", "python3.13"),
        "Role": props["Role"],
        "Handler": props.get("Handler", "index.handler"),
        "Code": {"ZipFile": _zip_inline(code["ZipFile"])} if "ZipFile" in code else code,
        "Timeout": int(props.get("Timeout", 3)),
        "MemorySize": int(props.get("MemorySize", 128)),
        "Environment": props.get("Environment", {"Variables": {}}),
        # AWS-owned managed layers (Powertools, SDK for pandas) exist in no local account and moto rejects
        # unknown layers; handlers run in-process on this venv, which has what those layers provide.
        "Layers": [arn for arn in props.get("Layers", []) if arn.split(":")[4] == p.account],
        "Architectures": props.get("Architectures", ["x86_64"]),
    }
    # Left out on purpose: KmsKeyArn (the environment's key; moto keeps variables in the clear either
    # way) and VpcConfig (the embedded AWS has no network to place a function in: handlers run in-process).
    for key in ("DeadLetterConfig", "TracingConfig", "LoggingConfig", "Description"):
        if key in props:
            kwargs[key] = props[key]
    arn = p.client("lambda").create_function(**kwargs)["FunctionArn"]
    if "ReservedConcurrentExecutions" in props:
        concurrency = int(props["ReservedConcurrentExecutions"])
        p.client("lambda").put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=concurrency
        )
    return Created(name, {"Arn": arn})


def _zip_inline(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("index.py", source)
    return buffer.getvalue()


@creates("AWS::Lambda::Permission")
def _permission(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    kwargs = {"FunctionName": props["FunctionName"], "StatementId": logical_id, "Action": props["Action"]}
    kwargs["Principal"] = props["Principal"]
    for key in ("SourceArn", "SourceAccount"):
        if key in props:
            kwargs[key] = props[key]
    p.client("lambda").add_permission(**kwargs)
    return Created(logical_id)


@creates("AWS::Lambda::EventInvokeConfig")
def _event_invoke_config(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    kwargs: dict[str, Any] = {
        "FunctionName": props["FunctionName"],
        "Qualifier": props.get("Qualifier", "$LATEST"),
    }
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
        if key in props:
            kwargs[key] = props[key]
    p.client("lambda").put_function_event_invoke_config(**kwargs)
    return Created(logical_id)


@creates("AWS::StepFunctions::StateMachine")
def _state_machine(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("StateMachineName") or p.physical_name(logical_id, 80)
    definition = props.get("DefinitionString") or json.dumps(props["Definition"])
    kwargs: dict[str, Any] = {"name": name, "definition": definition, "roleArn": props["RoleArn"]}
    if "LoggingConfiguration" in props:
        kwargs["loggingConfiguration"] = _lower_keys(props["LoggingConfiguration"])
    if "TracingConfiguration" in props:
        kwargs["tracingConfiguration"] = _lower_keys(props["TracingConfiguration"])
    arn = p.client("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
    return Created(arn, {"Arn": arn, "Name": name})


def _lower_keys(value: Any) -> Any:
    """CloudFormation spells Step Functions' keys in PascalCase, the API in camelCase."""
    if isinstance(value, dict):
        return {k[0].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


@creates("AWS::Events::EventBus")
def _event_bus(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    arn = p.client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    return Created(props["Name"], {"Arn": arn, "Name": props["Name"]})


@creates("AWS::Events::Rule")
def _rule(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    events = p.client("events")
    name = props.get("Name") or p.physical_name(logical_id, 64)
    bus = props.get("EventBusName", "default")
    kwargs: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        kwargs["EventPattern"] = json.dumps(props["EventPattern"])
    if "ScheduleExpression" in props:
        kwargs["ScheduleExpression"] = props["ScheduleExpression"]
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = [_target(t) for t in props.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    ref = name if bus == "default" else f"{bus}|{name}"
    return Created(ref, {"Arn": arn})


def _target(target: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in target.items() if k in ("Id", "Arn", "RoleArn", "Input", "InputPath")}
    if "InputTransformer" in target:
        transformer = dict(target["InputTransformer"])
        if isinstance(transformer.get("InputPathsMap"), dict):
            transformer["InputPathsMap"] = transformer["InputPathsMap"]
        out["InputTransformer"] = transformer
    for key in ("DeadLetterConfig", "RetryPolicy", "SqsParameters"):
        if key in target:
            out[key] = target[key]
    return out


@creates("AWS::Glue::Database")
def _glue_database(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    database = props["DatabaseInput"]
    p.client("glue").create_database(CatalogId=props["CatalogId"], DatabaseInput=database)
    return Created(database["Name"])


@creates("AWS::Glue::Table")
def _glue_table(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    table = props["TableInput"]
    p.client("glue").create_table(
        CatalogId=props["CatalogId"], DatabaseName=props["DatabaseName"], TableInput=table
    )
    return Created(table["Name"])


@creates("AWS::Athena::WorkGroup")
def _workgroup(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    config = props.get("WorkGroupConfiguration", {})
    p.client("athena").create_work_group(
        Name=props["Name"], Configuration=config, Description=props.get("Description", "")
    )
    return Created(props["Name"])


@creates("AWS::SageMaker::ModelPackageGroup")
def _model_package_group(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props["ModelPackageGroupName"]
    arn = p.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=name,
        ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", name),
    )["ModelPackageGroupArn"]
    return Created(arn, {"ModelPackageGroupArn": arn})


@creates("AWS::CloudWatch::Dashboard")
def _dashboard(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("DashboardName") or p.physical_name(logical_id, 255)
    p.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props["DashboardBody"])
    return Created(name)


@creates("AWS::CloudWatch::Alarm")
def _alarm(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("AlarmName") or p.physical_name(logical_id, 255)
    keys = (
        *("MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Period", "EvaluationPeriods"),
        "Threshold",
        *("ComparisonOperator", "AlarmActions", "OKActions", "Dimensions", "TreatMissingData"),
        *("DatapointsToAlarm", "AlarmDescription", "Metrics", "ActionsEnabled"),
    )
    kwargs = {k: props[k] for k in keys if k in props}
    for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if k in kwargs:
            kwargs[k] = int(kwargs[k])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    p.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
    return Created(name, {"Arn": p.arn("cloudwatch", f"alarm:{name}")})


@creates("AWS::CloudWatch::CompositeAlarm")
def _composite_alarm(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("AlarmName") or p.physical_name(logical_id, 255)
    keys = ("AlarmRule", "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions")
    kwargs = {k: props[k] for k in (*keys, "InsufficientDataActions") if k in props}
    p.client("cloudwatch").put_composite_alarm(AlarmName=name, **kwargs)
    return Created(name, {"Arn": p.arn("cloudwatch", f"alarm:{name}")})


@creates("AWS::SSM::Parameter")
def _ssm_parameter(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or f"/{p.stack_name}/{logical_id}"
    p.client("ssm").put_parameter(
        Name=name, Value=props["Value"], Type=props.get("Type", "String"), Overwrite=True
    )
    return Created(name)


@creates("AWS::CDK::Metadata")
def _cdk_metadata(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    return Created(logical_id)  # CDK's usage analytics; nothing to create in AWS either


@creates("AWS::DynamoDB::Table")
def _dynamodb_table(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Created:
    """CreateTable, then what CloudFormation sets with separate calls: TTL and point-in-time recovery."""
    db = p.client("dynamodb")
    name = props.get("TableName") or p.physical_name(logical_id, 255)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    for key in (
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "ProvisionedThroughput",
        "StreamSpecification",
    ):
        if key in props:
            kwargs[key] = props[key]
    sse = props.get("SSESpecification")
    if sse and sse.get("SSEEnabled"):
        kwargs["SSESpecification"] = {"Enabled": True, "SSEType": sse.get("SSEType", "KMS")}
        if "KMSMasterKeyId" in sse:
            kwargs["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
    if _tags(props):
        kwargs["Tags"] = _tags(props)
    table = db.create_table(**kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        db.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        db.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return Created(name, {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")})
