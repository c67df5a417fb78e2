"""Bearer tokens: signed, expiring, scoped; nothing but TokenError on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.core.tokens import TokenError, issue_token, verify_token

SECRET = "s" * 40


def test_issue_token_household_scope_reads_only_its_households():
    token = issue_token(SECRET, households=["a-1", "b-2"], ttl_s=60, now=100)

    principal = verify_token(token, SECRET, now=130)

    assert not principal.operator
    assert principal.can_read("a-1")
    assert principal.can_read("b-2")
    assert not principal.can_read("c-3")


def test_issue_token_operator_reads_everything():
    principal = verify_token(issue_token(SECRET, operator=True, ttl_s=60, now=0), SECRET, now=1)

    assert principal.operator
    assert principal.can_read("anything")


def test_verify_token_expired():
    token = issue_token(SECRET, households=["a-1"], ttl_s=60, now=100)

    with pytest.raises(TokenError) as error:
        verify_token(token, SECRET, now=160)
    assert error.value.code == "expired"


def test_verify_token_other_secret_is_forged():
    token = issue_token("t" * 40, operator=True, ttl_s=60, now=0)

    with pytest.raises(TokenError) as error:
        verify_token(token, SECRET, now=1)
    assert error.value.code == "bad_signature"


def test_verify_token_tampered_payload_is_forged():
    token = issue_token(SECRET, households=["a-1"], ttl_s=60, now=0)
    other = issue_token(SECRET, operator=True, ttl_s=60, now=0)
    prefix, _, signature = token.split(".")
    tampered = f"{prefix}.{other.split('.')[1]}.{signature}"

    with pytest.raises(TokenError) as error:
        verify_token(tampered, SECRET, now=1)
    assert error.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "missing"), ("", "missing"), ("abc", "malformed"), ("ws2.a.b", "malformed")],
)
def test_verify_token_malformed(token, code):
    with pytest.raises(TokenError) as error:
        verify_token(token, SECRET, now=0)
    assert error.value.code == code


@given(st.text(max_size=300))
def test_verify_token_any_text_is_a_token_error(text):
    with pytest.raises(TokenError):
        verify_token(text, SECRET, now=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"households": [], "operator": False},
        {"households": ["a-1"], "operator": True},
        {"households": ["../etc"]},
        {"households": ["a-1"], "ttl_s": 0},
    ],
)
def test_issue_token_refuses_ambiguous_or_bad_scopes(kwargs):
    with pytest.raises(ValueError, match=r"token|household|ttl"):
        issue_token(SECRET, **{"ttl_s": 60, **kwargs})


def test_issue_token_refuses_short_secret():
    with pytest.raises(ValueError, match="at least 32"):
        issue_token("short", operator=True, ttl_s=60)
