"""What ``wattstream status`` shows: stream shards, queue depths, bucket objects."""

from __future__ import annotations

from wattstream.hosting.template import StackDescription, StackError
from wattstream.local.server import client_factory, ensure_local_credentials


def collect_status(stack: StackDescription) -> list[tuple[str, str, str]]:
    """Rows of (kind, logical id, state); raises StackError when the stack is down."""
    from botocore.exceptions import EndpointConnectionError

    ensure_local_credentials()
    clients = client_factory(stack.endpoint_url, stack.region)
    kinesis, sqs, s3 = clients("kinesis"), clients("sqs"), clients("s3")
    rows: list[tuple[str, str, str]] = []
    try:
        for logical, physical in sorted(stack.resources.items()):
            if physical.startswith("https://sqs.") or physical.startswith("http"):
                name = physical.rsplit("/", 1)[1]
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                rows.append(
                    (
                        "queue",
                        logical,
                        f"{attrs['ApproximateNumberOfMessages']} waiting, "
                        f"{attrs['ApproximateNumberOfMessagesNotVisible']} in flight",
                    )
                )
        for key, value in sorted(stack.outputs.items()):
            if key.endswith("StreamName"):
                summary = kinesis.describe_stream_summary(StreamName=value)[
                    "StreamDescriptionSummary"
                ]
                rows.append(
                    (
                        "stream",
                        key.removesuffix("Name"),
                        f"{summary['StreamStatus']}, {summary['OpenShardCount']} shards",
                    )
                )
            elif key.endswith("BucketName"):
                listing = s3.list_objects_v2(Bucket=value)
                more = "+" if listing.get("IsTruncated") else ""
                rows.append(
                    ("bucket", key.removesuffix("Name"), f"{listing['KeyCount']}{more} objects")
                )
    except EndpointConnectionError as error:
        raise StackError(
            f"the local stack at {stack.endpoint_url} is not answering; is `wattstream stack up` "
            "still running?"
        ) from error
    return rows
