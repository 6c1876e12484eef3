"""Credential redaction for every message, repr, log line and ``config show`` value.

``redact(text)`` hides, wherever they appear in ``text`` (a URL, or a driver's error
message that quotes one):

- the password of a URL's user info: ``postgresql://bob:s3cret@db/meta`` ->
  ``postgresql://bob:***@db/meta`` (the user name stays: it tells which account failed);
- the value of every secret-looking ``name=value`` pair, in a query string or a
  key/value DSN: ``password=``, ``token=``, ``secret=``, ``key=``, ``sig=``,
  ``X-Amz-Signature=``, ``X-Amz-Credential=``, ``AWSAccessKeyId=`` … -> ``name=***``.

``remember_secret(value)`` adds a value to hide wherever it appears, whatever its shape
(``_secrets.py`` remembers every secret reference it resolves).

``redact_value(key, value)`` is for settings: a setting whose name says it is a secret
(``…password``, ``…token``, ``…_key``) shows ``***`` whole; any other text is ``redact``-ed.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "is_secret_name", "redact", "redact_value", "remember_secret"]

MASK = "***"

# Marks of a secret in a name lowercased without - and _ (rarely part of anything else)...
_SECRET_PARTS = (
    "password",
    "passwd",
    "secret",
    "credential",
    "signature",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
)
# ... and words that mark one only as a whole word ("tokenizer", "passage" are no secrets).
_SECRET_WORDS = frozenset({"token", "pwd", "pass", "sig", "sas", "auth"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")

# scheme://user:password@ — the password runs to the last @ before the host, so that
# one with an @ in it is hidden whole.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"]*:)[^\s/?#'\"]*@")
_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"]*:(?P<password>[^\s/?#'\"]*)@")
# name=value in a query string, a key/value DSN (``host=db password=x``) or a repr.
_PAIR = re.compile(
    r"(?P<name>[A-Za-z][\w.\-]*)(?P<eq>\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\")]+)"
)


# Resolved secrets of this process, hidden by ``redact`` wherever they appear. Shorter
# ones would hide ordinary words; a real secret is longer.
_KNOWN: set[str] = set()
_MIN_KNOWN = 6


def remember_secret(value: str) -> None:
    """Hide ``value`` (and the password of a URL it holds) from every ``redact`` from now."""
    for part in (value, *(m["password"] for m in _PASSWORD.finditer(value))):
        if len(part) >= _MIN_KNOWN:
            _KNOWN.add(part)


def is_secret_name(name: str) -> bool:
    """True when ``name`` (a setting, a query parameter, a header) names a secret.

    ``password``, ``db_password``, ``client_secret``, ``X-Amz-Signature``,
    ``AWSAccessKeyId``, ``access_token``, ``sig``, ``key``, ``api_key`` … all do.
    """
    plain = name.lower().replace("-", "").replace("_", "")
    words = [w.lower() for w in _WORD.findall(name)]
    return (
        any(part in plain for part in _SECRET_PARTS)
        or any(w in _SECRET_WORDS for w in words)
        or (bool(words) and words[-1] == "key")
    )


def redact(text: str) -> str:
    """``text`` with every URL password and secret-looking ``name=value`` hidden."""
    if not isinstance(text, str):
        return text
    for known in _KNOWN:
        if known in text:
            text = text.replace(known, MASK)
    # Most text (a server's log line) holds neither: skip the regular expressions.
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _PAIR.sub(_pair, text) if "=" in text else text


def redact_value(key: str, value: Any) -> Any:
    """A setting's value fit to show: secret settings whole, other text ``redact``-ed."""
    if is_secret_name(key) and value not in (None, ""):
        return MASK
    return redact(value) if isinstance(value, str) else value


def _pair(found: re.Match[str]) -> str:
    value = found["value"]
    if not is_secret_name(found["name"]) or value.strip("'\"") in (MASK, ""):
        return found[0]
    quote = value[0] if value[0] in "'\"" else ""
    return f"{found['name']}{found['eq']}{quote}{MASK}{quote}"
