"""The HTTP/2 front before moto: what the KCL daemon's Kinesis client needs locally."""

from __future__ import annotations

import json

import pytest

from wattstream.local.h2c import H2cFront, end_of_shard, filter_shards

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2", reason="hypercorn (dev extra) brings h2")


def _describe_probe(client, url: str):
    return client.post(
        url,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Kinesis_20131202.DescribeStreamSummary",
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kinesis/aws4_request,"
                " SignedHeaders=host, Signature=0"
            ),
        },
        content=b'{"StreamName": "h2c-probe"}',
    )


def test_h2c_front_forwards_http2_prior_knowledge_to_moto(aws, clients):
    clients("kinesis").create_stream(StreamName="h2c-probe", ShardCount=1)
    with H2cFront(aws.endpoint_url) as front, httpx.Client(http1=False, http2=True) as client:
        reply = _describe_probe(client, front.endpoint_url + "/")

    assert reply.http_version == "HTTP/2"
    assert reply.status_code == 200
    summary = json.loads(reply.content)["StreamDescriptionSummary"]
    assert summary["StreamName"] == "h2c-probe"


def test_h2c_front_moto_itself_refuses_http2(aws):
    """Why the front exists: moto (HTTP/1.1) cannot answer an HTTP/2 client."""
    with httpx.Client(http1=False, http2=True) as client, pytest.raises(httpx.HTTPError):
        _describe_probe(client, aws.endpoint_url + "/")


def test_h2c_front_stops_and_frees_its_port(aws):
    front = H2cFront(aws.endpoint_url)
    front.start()
    front.stop()

    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(front.endpoint_url)


def _shard(shard_id: str, parent: str | None = None, *, closed: bool = False) -> dict:
    shard = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
    if parent:
        shard["ParentShardId"] = parent
    if closed:
        shard["SequenceNumberRange"]["EndingSequenceNumber"] = "9"
    return shard


def test_filter_shards_after_a_split_as_kinesis_documents_it():
    shards = [_shard("s0", closed=True), _shard("s1", "s0"), _shard("s2", "s0")]

    def ids(kind: str) -> list[str]:
        return [s["ShardId"] for s in filter_shards(shards, {"Type": kind})]

    assert ids("AT_TRIM_HORIZON") == ["s0"]  # the parent alone tiles the key space
    assert ids("AT_LATEST") == ["s1", "s2"]
    assert ids("FROM_TRIM_HORIZON") == ["s0", "s1", "s2"]


def test_end_of_shard_drops_the_iterator_and_names_the_children_only_at_the_end():
    shards = [
        {**_shard("s0", closed=True), "HashKeyRange": {"StartingHashKey": "0"}},
        {**_shard("s1", "s0"), "HashKeyRange": {"StartingHashKey": "0"}},
        {**_shard("s2", "s0"), "HashKeyRange": {"StartingHashKey": "5"}},
    ]
    reply = {"Records": [], "NextShardIterator": "it", "MillisBehindLatest": 0}

    ended = end_of_shard(reply, "s0", 9, shards)  # at EndingSequenceNumber 9

    assert "NextShardIterator" not in ended
    assert [c["ShardId"] for c in ended["ChildShards"]] == ["s1", "s2"]
    assert ended["ChildShards"][0]["ParentShards"] == ["s0"]
    assert end_of_shard(reply, "s0", 8, shards) == reply  # records left: not the end
    assert end_of_shard(reply, "s1", 100, shards) == reply  # an open shard never ends
