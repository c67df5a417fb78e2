"""Bad-batch cost on the local stack: 10,000 bad items cost one object and one message.

Counts only (no timing assert: the figures are the benchmark's, ``bad_batch_p99_s``).
"""

from __future__ import annotations

from testing.reliability.bad_batch import BAD_KINDS, bad_batch_body, bad_batch_latency


def test_bad_batch_body_is_one_mib_of_distinct_bad_items():
    body = bad_batch_body()

    assert len(body) == 1024 * 1024
    assert body != bad_batch_body(seed=2)  # another seed, other items (other S3 keys)


def test_bad_batch_10000_items_cost_one_object_and_one_message(deploy_stack, clients):
    stack = deploy_stack()

    figures = bad_batch_latency(stack, clients, repeats=2)

    assert figures["bad_batch_status"] == [400]
    assert figures["bad_batch_rejected"] == 10_000
    assert figures["bad_batch_rejected_by_code"] == {code: 1_000 for code, _ in BAD_KINDS}
    assert figures["bad_batch_quarantined_items"] == 20_000
    assert figures["bad_batch_objects_per_request"] == 1
    assert figures["bad_batch_messages_per_request"] == 1
    assert figures["oversize_status"] == 413
    assert figures["bad_batch_p99_s"] > 0
