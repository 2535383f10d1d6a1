"""TokenVerifier remembers tokens it verified, and never past what a fresh check allows."""

from __future__ import annotations

import time

import pytest

from mesh_common.auth import TokenVerifier, issue_token
from mesh_common.errors import MeshError

SECRET = "test-secret-not-for-production-0123456789abcdef"


async def _refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(MeshError) as caught:
        await verifier.verify(token)
    return caught.value.message


async def test_a_remembered_token_is_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(SECRET)
    token = issue_token("alice", SECRET, ttl_s=60)
    assert (await verifier.verify(token)).user == "alice"
    assert (await verifier.verify(token)).user == "alice"  # remembered
    later = time.time() + 60 + 31  # past expiry and the 30 s leeway
    monkeypatch.setattr(time, "time", lambda: later)
    assert await _refusal(verifier, token) == "token expired"


async def test_a_changed_token_is_checked_in_full_after_the_original_verified() -> None:
    verifier = TokenVerifier(SECRET)
    token = issue_token("alice", SECRET)
    await verifier.verify(token)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert await _refusal(verifier, forged) == "invalid token"
    other = TokenVerifier("another-secret-that-is-long-enough-for-hs256-0000")
    assert await _refusal(other, token) == "invalid token"  # memory is per verifier


@pytest.mark.parametrize("subject", ["ali\x00ce", "alice\n", "\x7f"])
async def test_a_subject_with_a_control_character_is_refused(subject: str) -> None:
    token = issue_token(subject, SECRET)
    assert await _refusal(TokenVerifier(SECRET), token) == (
        "token subject holds a control character"
    )
    principal = await TokenVerifier(SECRET).verify(issue_token("Zoë Ng", SECRET))
    assert principal.user == "Zoë Ng"
