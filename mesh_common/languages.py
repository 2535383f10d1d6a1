"""Language codes as the services compare them."""

from __future__ import annotations


def primary_language(code: str) -> str:
    """The primary subtag of a BCP-47 code, lowercase ("pt-BR" -> "pt").

    Recognizers list the languages they transcribe by these.
    """
    return code.split("-", 1)[0].lower()
