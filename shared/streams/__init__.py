"""Stream ports (publisher/consumer) and their adapters.

The services only see the ports in :mod:`shared.streams.ports`; which bus carries the
records (Kinesis here, Kafka in a later adapter) is a composition-root decision.
"""

from shared.streams.ports import (
    PublishError,
    PublishReport,
    StreamPublisher,
    StreamRecord,
)

__all__ = ["PublishError", "PublishReport", "StreamPublisher", "StreamRecord"]
