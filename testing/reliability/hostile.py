"""Hostile input, generated with hypothesis: every item is bad by construction.

Each generated item is a *valid* reading with one part made hostile (a wrong type, NaN or
infinity, an injection string or a malformed id, a missing field, an impossible value),
or a whole payload or stream record that cannot be read at all (truncated, invalid UTF-8,
UTF-16, huge, random bytes, a flipped checksum). Being bad by construction is what lets
the scenario demand 100 % quarantined: a generator that could emit a valid item would
make "quarantined" unfalsifiable.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

INJECTIONS = (
    "../../etc/passwd",
    "'; DROP TABLE readings;--",
    "<script>alert(1)</script>",
    "h1\x00",
    "\x00",
    "h1\r\nX-Injected: 1",
    "${jndi:ldap://example.invalid/a}",
    "{{7*7}}",
    "h1/../../h2",
    "%2e%2e%2fetc",
    "h1\n",
    " h1",
    "h" * 65,
    "x" * 10_000,
    "\u202eevil",
    "\ud800",
)

#: A character no household id may contain (HOUSEHOLD_ID_PATTERN), to spoil any id.
_FORBIDDEN = st.sampled_from(list("/\\ '\"<>;\x00\n\r\t%$&|`*?{}[]()!#\u00e9\u4e2d\U0001f600"))


def bad_household_id() -> st.SearchStrategy[Any]:
    """An id that breaks the id rule: injections, forbidden characters, too long, not a str."""
    spoiled = st.tuples(st.text(max_size=20), _FORBIDDEN, st.text(max_size=20)).map(
        lambda t: t[0] + t[1] + t[2]
    )
    return st.one_of(
        st.sampled_from(INJECTIONS),
        spoiled,
        st.text(alphabet="abc", min_size=65, max_size=300),
        st.just(""),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )


def bad_power() -> st.SearchStrategy[Any]:
    """Power that is no plausible number: NaN, infinities, negative, huge, wrong types."""
    return st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "inf", "Infinity"]),
        st.floats(max_value=-0.001, allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e6, allow_nan=False, allow_infinity=False),
        st.text(max_size=10).filter(lambda s: not _is_number(s)),
        st.none(),
        st.booleans(),
        st.lists(st.floats(allow_nan=False), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bad_timestamp() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=30).filter(lambda s: not s[:4].isdigit()),
        st.sampled_from(["2007-13-01T00:00:00Z", "2007-04-31T00:00:00Z", "9999-01-01T00:00:00Z"]),
        st.just("2007-04-01T00:00:00"),  # naive: no timezone
        st.integers(min_value=10**13),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )


def hostile_item(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One bad JSON item derived from a valid reading (which it must not equal)."""

    def with_field(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return values.map(lambda v: {**valid, name: v})

    return st.one_of(
        with_field("household_id", bad_household_id()),
        with_field("global_active_power_kw", bad_power()),
        with_field("timestamp", bad_timestamp()),
        with_field("voltage_v", st.one_of(st.floats(max_value=79.0), st.floats(min_value=301.0))),
        st.sampled_from(sorted(valid)).map(lambda k: {n: v for n, v in valid.items() if n != k}),
        st.text(min_size=1, max_size=8).map(lambda k: {**valid, f"unknown_{k}": 1}),
        st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers())),
    )


def hostile_body(valid_body: bytes) -> st.SearchStrategy[tuple[bytes, str]]:
    """(body, content type) of a payload that cannot be read as a whole."""
    truncated = st.integers(min_value=1, max_value=max(1, len(valid_body) - 2)).map(
        lambda n: (valid_body[:n], "application/json")
    )
    return st.one_of(
        truncated,
        st.just((b"\xff\xfe" + valid_body.decode().encode("utf-16-le"), "application/json")),
        st.binary(min_size=1, max_size=200)
        .filter(lambda b: not _utf8(b))
        .map(lambda b: (b, "application/json")),
        st.just((valid_body.decode().encode("latin-1") + b"\xe9\xff", "application/json")),
        st.integers(min_value=10_000, max_value=100_000).map(
            lambda n: (b"[" * n + b"]" * n, "application/json")
        ),
        st.just((b"x" * (6 * 1024 * 1024 + 1), "application/json")),  # over the body limit
        st.sampled_from(["application/xml", "text/html", "image/png", "application/x-msgpack"]).map(
            lambda t: (valid_body, t)
        ),
    )


def _utf8(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def hostile_record(valid_records: list[bytes]) -> st.SearchStrategy[bytes]:
    """Bytes put straight on the readings stream that no consumer may archive."""
    valid = st.sampled_from(valid_records)
    return st.one_of(
        st.binary(min_size=1, max_size=2000),
        # large (one in ten 200 KB, within the 1 MiB limit), built from a seed: hypothesis'
        # own buffer is far smaller, so drawn bytes would be discarded as an overrun
        st.integers(0, 2**32).map(
            lambda seed: random.Random(seed).randbytes(200_000 if seed % 10 == 0 else 5_000)
        ),
        valid.flatmap(lambda v: st.integers(1, len(v) - 1).map(lambda n: v[:n])),
        valid.flatmap(
            lambda v: st.integers(0, len(v) - 1).map(
                lambda i: v[:i] + bytes([v[i] ^ 0x5A]) + v[i + 1 :]
            )
        ),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.just(b""),
    )


def generate(strategy: st.SearchStrategy[Any], count: int, *, seed: int = 0) -> list[Any]:
    """``count`` examples of a strategy, reproducibly (hypothesis outside a test).

    ``derandomize`` with the seed folded into the strategy keeps runs identical; the
    examples are what hypothesis generates, shrinking off (nothing fails here).
    """
    examples: list[Any] = []
    seeded = st.tuples(st.just(seed), strategy).map(lambda pair: pair[1])

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(seeded)
    def collect(example: Any) -> None:
        examples.append(example)

    collect()
    return examples[:count]
