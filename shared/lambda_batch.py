"""Lambda's partial batch response from a batch handled as a whole.

Why: our stream and queue handlers work on the delivered batch at once (one write per
household-day or household, not per record) and end with "these records failed, for these
reasons". Powertools' ``BatchProcessor`` then builds ``batchItemFailures``, so a failed
record is retried (with the records after it, on Kinesis) and never acknowledged. Every
Lambda shell settles its batch the same way, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

__all__ = ["RecordFailed", "settle"]


class RecordFailed(RuntimeError):
    """Marks a record as failed for Powertools' batch processor."""


def settle(
    event: dict[str, Any], context: Any, failed: Mapping[str, str], *, kinesis: bool
) -> dict[str, Any]:
    """Lambda's ``batchItemFailures`` for the records in ``failed``.

    ``failed`` maps a Kinesis sequence number (``kinesis=True``) or an SQS message id to
    the reason the record failed.
    """

    def check(record: KinesisStreamRecord | SQSRecord) -> None:
        identifier = (
            record.kinesis.sequence_number
            if isinstance(record, KinesisStreamRecord)
            else record.message_id
        )
        reason = failed.get(identifier)
        if reason is not None:
            raise RecordFailed(reason)

    processor = BatchProcessor(
        event_type=EventType.KinesisDataStreams if kinesis else EventType.SQS,
        raise_on_entire_batch_failure=False,
    )
    return dict(
        process_partial_response(
            event=event, record_handler=check, processor=processor, context=context
        )
    )
