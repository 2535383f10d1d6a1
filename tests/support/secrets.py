"""The secrets the suite mints, and a scanner that finds them (or any credential) in text.

Token helpers register what they mint (`register_secret`); `tests/support/leak_check.py`
captures every log line of the run and fails the test during which one leaked.

    token = register_secret(issue_token(...))
    assert not leaks_in(some_log_text)
"""

from __future__ import annotations

import re

from mesh_common.logging import redact

# What the scanner looks up: a JWT's signature (the part that must never show, and which a
# line cut short can hold without the rest), or the whole of any other secret.
minted_secrets: set[str] = set()

# Secrets are looked up as whole runs of these characters, so that scanning costs one pass
# over the text however many secrets the run has minted.
_RUN = re.compile(r"[\w-]{16,}", re.ASCII)


def register_secret(secret: str) -> str:
    """Records a secret the suite made, so the leak check looks for it.

    Args:
        secret: A JWT, or a key or password of at least 16 letters, digits, "_" or "-".

    Returns:
        The secret, for use in an expression.
    """
    key = secret.rsplit(".", 1)[1] if secret.count(".") == 2 else secret
    if _RUN.fullmatch(key) is None:
        raise ValueError("a registered secret is 16 or more letters, digits, '_' or '-'")
    minted_secrets.add(key)
    return secret


def leaks_in(text: str) -> list[str]:
    """Names what is secret in a text, without repeating the secrets.

    Args:
        text: Log lines or captured output.

    Returns:
        One description per leak: a minted secret found verbatim, or a line that holds a
        credential by its shape (a JWT, a bearer token, an `Authorization` value...), shown
        redacted; empty when the text holds none.
    """
    found = [
        f"a minted secret ({len(run)} characters, starting {run[:4]!r})"
        for run in _RUN.findall(text)
        if run in minted_secrets
    ]
    for line in text.splitlines():
        redacted = redact(line)
        if redacted != line:
            found.append(f"a credential-shaped value: {redacted[:300]!r}")
    return found
