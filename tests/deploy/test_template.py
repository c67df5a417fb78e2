"""The SAM template's contract: event sources with bounded failure handling, least-privilege
IAM, and every resource a function references actually provisioned from the same template.

These read ``deploy/template.yaml`` (and its offline SAM translation) directly; the last
ones deploy it on the local stack (moto server) like every adapter test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from services.gateway.shells.api_lambda import dead_letter_queues
from tests.conftest import REGION, TEMPLATE
from wattstream.hosting.template import load_template
from wattstream.local.stack import LOCAL_ACCOUNT_ID, translate

#: Resource types the local stack does not create; each is AWS-only and documented in the
#: README (access policies and API Gateway are enforced on AWS only; the shared code layer
#: is the installed project locally).
AWS_ONLY_TYPES = {
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
    "AWS::Lambda::LayerVersion",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
}
DATA_ACTIONS = ("s3:", "dynamodb:", "kinesis:", "sqs:")
#: Wildcards of SAM policy templates that match a known, closed set of actions (checked
#: against the IAM action list): SQSSendMessagePolicy's ``sqs:SendMessage*`` is exactly
#: SendMessage and SendMessageBatch. Any other ``*`` in an action fails.
NARROW_WILDCARDS = {"sqs:SendMessage*": {"sqs:SendMessage", "sqs:SendMessageBatch"}}
#: Policies SAM attaches for logs and event sources (AWS-managed; see the README on IAM).
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaKinesisExecutionRole",
    "AWSLambdaSQSQueueExecutionRole",
}
PSEUDO = {"AWS::StackName": None, "AWS::AccountId": LOCAL_ACCOUNT_ID, "AWS::Region": REGION}

TEMPLATE_DICT = load_template(TEMPLATE)
RESOURCES: dict[str, Any] = TEMPLATE_DICT["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}


def _events(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, function in FUNCTIONS.items():
        for event in (function["Properties"].get("Events") or {}).values():
            if event["Type"] == kind:
                yield name, event["Properties"]


def _target(value: Any) -> str:
    """``!GetAtt X.Arn`` / ``!Ref X`` -> ``X``."""
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return str(value["Ref"])


def references(value: Any) -> set[str]:
    """Every logical id (resource or parameter) a template value refers to."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value or "Fn::GetAtt" in value:
            found.add(_target(value))
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text = sub if isinstance(sub, str) else sub[0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}


# --- event sources -----------------------------------------------------------------------


@pytest.mark.parametrize(("function", "event"), list(_events("Kinesis")))
def test_template_kinesis_event_fails_narrowly_and_boundedly(function, event):
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["BisectBatchOnFunctionError"] is True
    assert 0 <= event["MaximumRetryAttempts"] <= 10  # -1 would retry until the data expires
    assert 60 <= event["MaximumRecordAgeInSeconds"] <= 24 * 3600  # within the retention
    destination = _target(event["DestinationConfig"]["OnFailure"]["Destination"])
    assert RESOURCES[destination]["Type"] == "AWS::SQS::Queue"


@pytest.mark.parametrize(("function", "event"), list(_events("SQS")))
def test_template_sqs_event_has_partial_failures_redrive_and_room_for_the_timeout(function, event):
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = RESOURCES[_target(event["Queue"])]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert RESOURCES[_target(redrive["deadLetterTargetArn"])]["Type"] == "AWS::SQS::Queue"
    assert 1 <= redrive["maxReceiveCount"] <= 10
    visibility = queue.get("VisibilityTimeout", 30)
    if isinstance(visibility, dict):
        visibility = TEMPLATE_DICT["Parameters"][visibility["Ref"]]["Default"]
    timeout = FUNCTIONS[function]["Properties"].get(
        "Timeout", TEMPLATE_DICT["Globals"]["Function"]["Timeout"]
    )
    # Lambda refuses the mapping otherwise; AWS recommends six times the timeout.
    assert visibility >= timeout


def test_template_every_failure_and_dead_letter_queue_keeps_messages_14_days():
    dead_letters = {
        _target(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for q in RESOURCES.values()
        if q["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in q["Properties"]
    }
    destinations = {
        _target(e["DestinationConfig"]["OnFailure"]["Destination"]) for _, e in _events("Kinesis")
    }
    for queue in dead_letters | destinations:
        assert RESOURCES[queue]["Properties"]["MessageRetentionPeriod"] == 1_209_600


def test_template_zip_functions_share_the_layer_and_image_function_has_no_runtime():
    layers = {k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::LayerVersion"}
    for name, function in FUNCTIONS.items():
        props = function["Properties"]
        if props.get("PackageType") == "Image":
            assert {"Runtime", "Handler", "Layers", "CodeUri"}.isdisjoint(props), name
            assert function["Metadata"]["Dockerfile"]
        else:
            assert props["Runtime"] == "python3.12", name
            assert {_target(layer) for layer in props["Layers"]} == layers, name
            assert function["Metadata"]["BuildMethod"] == "makefile", name


def _api_dead_letter_queues() -> dict[str, str]:
    """The API's ``GATEWAY_DEAD_LETTER_QUEUES`` as written: name -> logical id."""
    variables = FUNCTIONS["GatewayApiFunction"]["Properties"]["Environment"]["Variables"]
    text = variables["GATEWAY_DEAD_LETTER_QUEUES"]["Fn::Sub"]
    document = json.loads(re.sub(r"\$\{([^}]+)\}", r"\1", text))
    return {name: str(value) for name, value in document.items()}


def test_template_api_shows_every_dead_letter_queue_the_outputs_name():
    """The API on AWS sees the queues the local CLI derives from the stack outputs."""
    outputs = {
        name: _target(output["Value"])
        for name, output in TEMPLATE_DICT["Outputs"].items()
        if isinstance(output["Value"], dict) and "Ref" in output["Value"]
    }
    shown = _api_dead_letter_queues()

    assert shown == dead_letter_queues(outputs)
    assert all(RESOURCES[queue]["Type"] == "AWS::SQS::Queue" for queue in shown.values())


def test_template_api_may_read_the_attributes_of_each_queue_it_shows():
    granted: set[str] = set()
    for policy in FUNCTIONS["GatewayApiFunction"]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if "sqs:GetQueueAttributes" in _strings(statement["Action"]):
                granted |= references(statement["Resource"])

    assert granted == set(_api_dead_letter_queues().values())


# --- IAM ----------------------------------------------------------------------------------


def _statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical_id, statement


def _strings(value: Any) -> list[str]:
    """The literal text of an IAM value (intrinsics' literal parts; refs are ours)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            return [re.sub(r"\$\{[^}]+\}", "X", sub if isinstance(sub, str) else sub[0])]
        if "Fn::Join" in value:
            return ["".join(p if isinstance(p, str) else "X" for p in value["Fn::Join"][1])]
        if "Fn::If" in value:
            return _strings(value["Fn::If"][1:])
        return ["X"]  # Ref / GetAtt of a template resource
    return []


CFN = translate(TEMPLATE_DICT, REGION)


@pytest.mark.parametrize(("role", "statement"), list(_statements(CFN)))
def test_iam_no_wildcard_actions_nor_wildcard_data_resources(role, statement):
    assert statement["Effect"] == "Allow"
    actions = _strings(statement["Action"])
    wildcards = [a for a in actions if "*" in a and a not in NARROW_WILDCARDS]
    assert not wildcards, (role, actions)
    if any(action.startswith(DATA_ACTIONS) for action in actions):
        resources = _strings(statement["Resource"])
        # Objects under a bucket and indexes of a table are scoped by their parent.
        scoped = [re.sub(r"/\*$", "", r) for r in resources]
        assert all("*" not in r for r in scoped), (role, resources)


def test_iam_roles_attach_only_the_lambda_execution_managed_policies():
    roles = {k: v for k, v in CFN["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert roles
    for role in roles.values():
        arns = role["Properties"].get("ManagedPolicyArns", [])
        names = {_strings(arn)[0].rsplit("/", 1)[-1] for arn in arns}
        assert names <= MANAGED_POLICIES


def test_iam_walk_finds_a_wildcard():
    """The IAM test above can fail: a policy with a wildcard is caught."""
    bad = {"Action": ["s3:GetObject"], "Resource": "*", "Effect": "Allow"}
    with pytest.raises(AssertionError):
        test_iam_no_wildcard_actions_nor_wildcard_data_resources("Role", bad)
    with pytest.raises(AssertionError):
        test_iam_no_wildcard_actions_nor_wildcard_data_resources(
            "Role", {"Action": "dynamodb:*", "Resource": "arn", "Effect": "Allow"}
        )


# --- data at rest: private and encrypted ---------------------------------------------------

BUCKETS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::S3::Bucket"}
#: Data stores and the property that encrypts them at rest (DynamoDB always encrypts).
ENCRYPTION = {
    "AWS::Kinesis::Stream": lambda p: p.get("StreamEncryption", {}).get("EncryptionType") == "KMS",
    "AWS::SQS::Queue": lambda p: p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p,
}


def _bucket_problems(properties: dict[str, Any]) -> list[str]:
    problems = []
    block = properties.get("PublicAccessBlockConfiguration", {})
    for flag in (
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ):
        if block.get(flag) is not True:
            problems.append(f"{flag} is not true")
    if properties.get("AccessControl", "Private") != "Private":
        problems.append(f"AccessControl {properties['AccessControl']}")
    rules = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
    algorithms = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
    if not algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
        problems.append("no default server-side encryption")
    return problems


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_template_bucket_private_and_encrypted(bucket):
    assert _bucket_problems(BUCKETS[bucket]["Properties"]) == []


def test_template_no_bucket_policy_grants_everyone():
    for name, resource in RESOURCES.items():
        if resource["Type"] != "AWS::S3::BucketPolicy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement.get("Principal") not in ("*", {"AWS": "*"}), name


@pytest.mark.parametrize(
    "name",
    sorted(k for k, v in RESOURCES.items() if v["Type"] in ENCRYPTION),
)
def test_template_streams_and_queues_encrypted_at_rest(name):
    resource = RESOURCES[name]
    assert ENCRYPTION[resource["Type"]](resource.get("Properties", {})), name


def test_template_bucket_check_finds_a_public_unencrypted_bucket():
    """The bucket test above can fail: a public, unencrypted bucket is caught."""
    assert len(_bucket_problems({"AccessControl": "PublicRead"})) == 6


# --- every reference provisioned on the local stack -------------------------------------


def test_local_stack_has_every_resource_the_functions_reference(deploy_stack):
    stack = deploy_stack()
    deployed = set(stack.resources) | set(stack.not_emulated)
    parameters = set(TEMPLATE_DICT["Parameters"])
    globals_env = TEMPLATE_DICT["Globals"]["Function"].get("Environment", {})

    checked = 0
    for name, function in FUNCTIONS.items():
        props = function["Properties"]
        for part in ("Environment", "Policies", "Events", "Layers"):
            for target in references(props.get(part)) | references(globals_env):
                checked += 1
                if target in parameters:
                    continue
                assert target in RESOURCES, f"{name}.{part} refers to unknown {target}"
                # SAM renames a layer version with a content hash: match its prefix.
                logical = (
                    target
                    if target in deployed
                    else next((d for d in deployed if d.startswith(target)), target)
                )
                if logical in stack.resources:
                    continue
                if "Condition" in RESOURCES[target]:
                    continue  # behind a condition that is false by default (e.g. SageMaker)
                assert stack.not_emulated.get(logical) in AWS_ONLY_TYPES, (
                    f"{name}.{part}: {target} was not created locally"
                )
    assert checked > 50


def test_local_stack_function_environment_points_at_the_created_resources(deploy_stack):
    stack = deploy_stack()
    globals_env = TEMPLATE_DICT["Globals"]["Function"]["Environment"]["Variables"]
    for name, function in FUNCTIONS.items():
        variables = {
            **globals_env,
            **function["Properties"].get("Environment", {}).get("Variables", {}),
        }
        deployed = stack.functions[name].environment
        for key, value in variables.items():
            if isinstance(value, dict) and "Ref" in value and value["Ref"] in RESOURCES:
                assert deployed[key] == stack.resources[value["Ref"]], (name, key)


def test_local_stack_api_dead_letter_queues_are_the_created_queues(deploy_stack):
    stack = deploy_stack()
    environment = stack.functions["GatewayApiFunction"].environment

    shown = json.loads(environment["GATEWAY_DEAD_LETTER_QUEUES"])

    assert shown == dead_letter_queues(stack.outputs)
    every_failure_queue = {
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::SQS::Queue"
        and name.endswith(("DeadLetterQueue", "FailureQueue"))
    }
    assert set(shown) == every_failure_queue


def test_local_stack_policy_names_built_with_sub_are_created_buckets(deploy_stack, clients):
    """Policies name some buckets with ``!Sub`` (to avoid a dependency cycle): check them."""
    stack = deploy_stack()
    buckets = {b["Name"] for b in clients("s3").list_buckets()["Buckets"]}
    pseudo = {**PSEUDO, "AWS::StackName": stack.stack_name}
    subs = 0
    for function in FUNCTIONS.values():
        for policy in function["Properties"].get("Policies", []):
            for args in policy.values() if isinstance(policy, dict) else []:
                name = args.get("BucketName") if isinstance(args, dict) else None
                if isinstance(name, dict) and "Fn::Sub" in name:
                    resolved = re.sub(r"\$\{([^}]+)\}", lambda m: pseudo[m[1]], name["Fn::Sub"])
                    assert resolved in buckets
                    subs += 1
    assert subs >= 1
