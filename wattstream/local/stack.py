"""The embedded AWS stack: moto server on loopback, provisioned from the SAM template.

One source of truth: every stream, bucket, queue and table comes from ``deploy/``'s
SAM template, translated offline to CloudFormation and deployed with moto's
CloudFormation. Two things moto does not do the way AWS does are handled here, once:

* Event source mappings: moto would try to run the function in Docker for every
  Kinesis put or SQS send. They are taken out of what moto deploys and handed to the
  local event-source runner instead, with every intrinsic (``!GetAtt``, ``!Ref``)
  resolved by moto itself through generated stack outputs.
* Bucket ``NotificationConfiguration``: moto ignores it in a stack, so it is resolved
  the same way and applied with ``PutBucketNotificationConfiguration``.
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

from wattstream.hosting.template import (
    FunctionSpec,
    MappingSpec,
    StackDescription,
    StackError,
    handler_of,
)

LOCAL_ACCOUNT_ID = "123456789012"
CODE_BUCKET = "wattstream-local-code"
CODE_KEY = "placeholder.zip"
#: Container-image functions get this placeholder image; the runner imports their handler.
PLACEHOLDER_IMAGE = (
    f"{LOCAL_ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/wattstream-local:placeholder"
)
_OUTPUT_PREFIX = "WattstreamLocal"
_INTRINSICS = frozenset(
    {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::If", "Fn::Select", "Fn::ImportValue"}
)


def translate(sam_template: Mapping[str, Any], region: str) -> dict[str, Any]:
    """SAM -> CloudFormation, offline, with local code URIs replaced by a placeholder.

    The functions' real code is imported in-process by the runner, so moto only needs a
    syntactically valid code location; the original ``CodeUri`` is kept for the runner.
    """
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(dict(sam_template))
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and "InlineCode" not in props:
            if props.get("PackageType") == "Image":
                props["ImageUri"] = PLACEHOLDER_IMAGE
            else:
                props["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator reads the region from here
    try:
        return dict(transform(template, {}, _NoManagedPolicies()))
    except Exception as error:
        raise StackError(f"SAM translation failed: {error}") from error
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def _has_intrinsic(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(_INTRINSICS & value.keys()) or any(_has_intrinsic(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_intrinsic(v) for v in value)
    return False


def _extract_intrinsics(value: Any, outputs: dict[str, Any], counter: list[int]) -> Any:
    """Replace each intrinsic by an output name; moto resolves the outputs for us."""
    if isinstance(value, dict) and _INTRINSICS & value.keys():
        counter[0] += 1
        name = f"{_OUTPUT_PREFIX}{counter[0]}"
        outputs[name] = {"Value": value}
        return {"__output__": name}
    if isinstance(value, dict):
        return {k: _extract_intrinsics(v, outputs, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [_extract_intrinsics(v, outputs, counter) for v in value]
    return value


def _fill_outputs(value: Any, resolved: Mapping[str, str]) -> Any:
    if isinstance(value, dict) and "__output__" in value:
        text = resolved[value["__output__"]]
        return int(text) if text.lstrip("-").isdigit() else text
    if isinstance(value, dict):
        return {k: _fill_outputs(v, resolved) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_outputs(v, resolved) for v in value]
    return value


def split_for_moto(
    cfn: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Take out what the runner (mappings) and we (notifications) must apply ourselves.

    Returns the template for moto, the mappings by logical id and the notification
    configurations by bucket logical id, each with intrinsics turned into output refs.
    """
    template = copy.deepcopy(dict(cfn))
    resources: dict[str, Any] = template["Resources"]
    outputs: dict[str, Any] = template.setdefault("Outputs", {})
    counter = [0]
    mappings: dict[str, dict[str, Any]] = {}
    notifications: dict[str, dict[str, Any]] = {}
    for logical_id, resource in list(resources.items()):
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            props = resource.get("Properties", {})
            function_ref = props.get("FunctionName", {})
            function_id = function_ref.get("Ref") if isinstance(function_ref, dict) else None
            if not function_id:
                raise StackError(f"{logical_id}: FunctionName must be a Ref to a template function")
            mappings[logical_id] = {
                "function_logical_id": function_id,
                "properties": _extract_intrinsics(props, outputs, counter),
            }
            del resources[logical_id]
        elif resource["Type"] == "AWS::S3::Bucket":
            config = resource.get("Properties", {}).pop("NotificationConfiguration", None)
            if config:
                notifications[logical_id] = _extract_intrinsics(config, outputs, counter)
    for resource in resources.values():  # nothing may depend on a removed mapping
        depends = resource.get("DependsOn")
        if isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in mappings]
        elif isinstance(depends, str) and depends in mappings:
            del resource["DependsOn"]
    return template, mappings, notifications


def _to_s3_notification(config: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's notification shape -> the S3 API's shape."""
    result: dict[str, Any] = {}
    shapes = {
        "QueueConfigurations": ("Queue", "QueueArn"),
        "TopicConfigurations": ("Topic", "TopicArn"),
        "LambdaConfigurations": ("Function", "LambdaFunctionArn"),
    }
    for key, (cfn_target, api_target) in shapes.items():
        entries = []
        for entry in config.get(key, []):
            api_entry: dict[str, Any] = {api_target: entry[cfn_target], "Events": [entry["Event"]]}
            rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules")
            if rules:
                api_entry["Filter"] = {
                    "Key": {
                        "FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                    }
                }
            entries.append(api_entry)
        if entries:
            result[key] = entries
    return result


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "wattstream runs this function in-process (local runner)")
    return buffer.getvalue()


def deploy(
    sam_template: Mapping[str, Any],
    *,
    clients: Any,
    stack_name: str,
    region: str,
    endpoint_url: str,
    template_path: str = "",
    parameters: Mapping[str, str] | None = None,
) -> StackDescription:
    """Deploy a SAM template to the (moto) endpoint and describe what was created.

    ``clients`` is a callable ``clients(service_name) -> boto3 client``; it is injected so
    this works against any endpoint.
    """
    s3 = clients("s3")
    s3.create_bucket(Bucket=CODE_BUCKET)
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=_placeholder_zip())
    cfn = translate(sam_template, region)
    moto_template, raw_mappings, raw_notifications = split_for_moto(cfn)
    cloudformation = clients("cloudformation")
    try:
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(moto_template),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except Exception as error:
        raise StackError(f"creating stack {stack_name!r} failed: {error}") from error
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise StackError(f"stack {stack_name!r} ended in {stack['StackStatus']}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }
    # Resources behind a Condition are absent when it is false: that is not emulation.
    not_emulated = {
        logical: moto_template["Resources"][logical]["Type"]
        for logical in sorted(set(moto_template["Resources"]) - set(resources))
        if "Condition" not in moto_template["Resources"][logical]
    }
    notifications = {}
    for bucket_id, config in raw_notifications.items():
        resolved = _to_s3_notification(_fill_outputs(config, outputs))
        s3.put_bucket_notification_configuration(
            Bucket=resources[bucket_id], NotificationConfiguration=resolved
        )
        notifications[bucket_id] = resolved
    functions = _describe_functions(sam_template, cfn, resources, clients("lambda"))
    mappings = [
        MappingSpec(
            logical_id=logical_id,
            function_logical_id=raw["function_logical_id"],
            properties=_fill_outputs(raw["properties"], outputs),
        )
        for logical_id, raw in sorted(raw_mappings.items())
    ]
    public_outputs = {k: v for k, v in outputs.items() if not k.startswith(_OUTPUT_PREFIX)}
    return StackDescription(
        stack_name=stack_name,
        region=region,
        endpoint_url=endpoint_url,
        template_path=template_path,
        resources=resources,
        outputs=public_outputs,
        functions=functions,
        mappings=mappings,
        notifications=notifications,
        not_emulated=not_emulated,
    )


def _describe_functions(
    sam_template: Mapping[str, Any],
    cfn: Mapping[str, Any],
    resources: Mapping[str, str],
    lambda_client: Any,
) -> dict[str, FunctionSpec]:
    sam_resources = sam_template.get("Resources", {})
    globals_ = sam_template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        sam_props = sam_resources.get(logical_id, {}).get("Properties", {})
        config = lambda_client.get_function_configuration(FunctionName=resources[logical_id])
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            handler=handler_of(config, sam_props),
            code_uri=str(sam_props.get("CodeUri", globals_.get("CodeUri", "."))),
            timeout_s=int(config.get("Timeout") or 3),
            memory_mb=int(config.get("MemorySize") or 128),
            environment=dict(config.get("Environment", {}).get("Variables", {})),
        )
    return specs
