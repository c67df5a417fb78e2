"""S3 reads where a missing object is an answer, not an error.

Why: the archive and result stores treat "no such object" as "nothing stored yet" (a
first write, a day without data), while every other S3 error must still fail the call.
Which error codes mean "missing" depends on the call (``NoSuchKey`` for GET, a bare
``404`` for HEAD, ``NotFound`` on some emulators), so the rule lives here once.
"""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import ClientError

__all__ = ["get_object_or_none", "is_missing"]

_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing(error: ClientError) -> bool:
    """Whether an S3 error says the object (or key) does not exist."""
    return error.response.get("Error", {}).get("Code") in _MISSING


def get_object_or_none(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The ``GetObject`` reply (``s3`` is an injected boto3 client), or None if missing."""
    try:
        return dict(s3.get_object(Bucket=bucket, Key=key))
    except ClientError as error:
        if is_missing(error):
            return None
        raise
