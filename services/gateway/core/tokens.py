"""Bearer tokens of the gateway API: HMAC-SHA256 signed, expiring, scoped.

Why our own small format and not a JWT library: the API needs exactly one algorithm with
one shared secret, and a parser that accepts nothing else (no ``alg`` header to
downgrade, no key lookup). A token is ``ws1.<payload>.<signature>``, both parts
unpadded base64url; the payload is compact JSON ``{"v": 1, "op": bool, "hh": [ids],
"iat": s, "exp": s}``; the signature is HMAC-SHA256 over ``ws1.<payload>``, compared in
constant time. A household token reads only the households it names; an operator token
reads everything. Verification is pure (``now`` is passed in); only :func:`issue_token`
reads the clock when the caller gives none (it is what ``wattstream token`` calls).

Example:
    >>> secret = "x" * 32
    >>> token = issue_token(secret, households=["uci-0001"], ttl_s=60, now=1_000)
    >>> principal = verify_token(token, secret, now=1_030)
    >>> principal.can_read("uci-0001"), principal.can_read("uci-0002")
    (True, False)
    >>> verify_token(token, secret, now=1_061)
    Traceback (most recent call last):
    ...
    services.gateway.core.tokens.TokenError: expired: the token expired at 1970-01-01T00:17:40+00:00
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from shared.schema import HOUSEHOLD_ID_PATTERN

__all__ = [
    "MAX_TOKEN_CHARS",
    "MIN_SECRET_BYTES",
    "Principal",
    "TokenError",
    "issue_token",
    "verify_token",
]

PREFIX: Final = "ws1"
MIN_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 16_384
MAX_HOUSEHOLDS: Final = 500
MAX_TTL_S: Final = 366 * 86_400
_HOUSEHOLD: Final = re.compile(HOUSEHOLD_ID_PATTERN)

TokenProblem = Literal["missing", "malformed", "bad_signature", "expired"]


class TokenError(Exception):
    """Why a token is refused; always an HTTP 401."""

    def __init__(self, code: TokenProblem, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who is asking: an operator, or the holder of some households' token."""

    operator: bool
    households: frozenset[str]
    expires_at: int

    def can_read(self, household_id: str) -> bool:
        return self.operator or household_id in self.households


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())


def issue_token(
    secret: str | bytes,
    *,
    households: Iterable[str] = (),
    operator: bool = False,
    ttl_s: int,
    now: float | None = None,
) -> str:
    """A token for ``households`` (or every household with ``operator``), valid ``ttl_s``."""
    ids = sorted(set(households))
    if operator == bool(ids):
        raise ValueError("a token is either for an operator or for some households")
    if len(ids) > MAX_HOUSEHOLDS:
        raise ValueError(f"at most {MAX_HOUSEHOLDS} households per token")
    bad = [h for h in ids if not _HOUSEHOLD.fullmatch(h)]
    if bad:
        raise ValueError(f"malformed household ids: {bad[:5]}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S}]")
    issued = int(time.time() if now is None else now)
    payload = {"v": 1, "op": operator, "hh": ids, "iat": issued, "exp": issued + int(ttl_s)}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_sign(_key(secret), signed)}"


def verify_token(token: str | None, secret: str | bytes, *, now: float) -> Principal:
    """The principal of a valid token; :class:`TokenError` otherwise (never anything else)."""
    if not token:
        raise TokenError("missing", "send 'Authorization: Bearer <token>'")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", "the token is too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("malformed", f"a token has the form {PREFIX}.<payload>.<signature>")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        expected = _sign(_key(secret), signed)
    except UnicodeEncodeError as error:
        raise TokenError("malformed", "the token is not ASCII") from error
    if not hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "replace")):
        raise TokenError("bad_signature", "the token's signature does not match")
    try:
        payload = json.loads(_unb64(parts[1]))
        return _principal(payload, now)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as error:
        raise TokenError("malformed", f"unreadable token payload: {error}") from error


def _principal(payload: Any, now: float) -> Principal:
    if not isinstance(payload, dict) or payload.get("v") != 1:
        raise ValueError("unknown token version")
    operator, ids, expires = payload["op"], payload["hh"], payload["exp"]
    if not isinstance(operator, bool) or not isinstance(expires, int):
        raise TypeError("bad token fields")
    if not isinstance(ids, list) or not all(isinstance(h, str) for h in ids):
        raise TypeError("bad token households")
    if now >= expires:
        when = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat()
        raise TokenError("expired", f"the token expired at {when}")
    return Principal(operator=operator, households=frozenset(ids), expires_at=expires)
