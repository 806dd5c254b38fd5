"""Database URLs without their secrets, for whatever is shown, logged or recorded.

A SQLAlchemy URL can carry a password in several places: ``user:password@host``, a query parameter (``password``,
``passwd``, ``pwd``, ``sslpassword``, a token...), or inside an ODBC connection string (``odbc_connect=...PWD=...``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

HIDDEN = "***"
# Query parameter names that hold a secret: password, passwd, pwd, sslpassword, token, secret, api_key, ...
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|(?<!ssl)key$|credential|auth", re.IGNORECASE)
# In an ODBC connection string: PWD=...; (a braced value may hold ';').
_ODBC_SECRET = re.compile(r"((?:^|;)\s*[^;=]*(?:pwd|pass|token|secret)[^;=]*=)(\{[^}]*\}|[^;]*)", re.IGNORECASE)
# For text that is not a URL SQLAlchemy can parse: user:password@ and name=value pairs.
_USERINFO = re.compile(r"(//[^/:@\s]*:)[^@/\s]*(@)")
_PAIR = re.compile(r"((?:^|[?&;\s])[^?&;=\s]*(?:pass|pwd|secret|token|key|credential|auth)[^?&;=\s]*=)[^&;\s]*",
                   re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with every password and secret in it replaced by ``***``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return _PAIR.sub(rf"\g<1>{HIDDEN}", _USERINFO.sub(rf"\g<1>{HIDDEN}\g<2>", url))
    query = {name: _redact_value(name, value) for name, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)


def holds_secret(url: str) -> bool:
    """Whether ``url`` carries a password or another secret anywhere (then it is never recorded)."""
    return redact(url) != _normalised(url)


def _normalised(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=False)
    except (ArgumentError, ValueError, TypeError):
        return url


def _redact_value(name: str, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
    if isinstance(value, tuple):
        return tuple(_redact_one(name, item) for item in value)
    return _redact_one(name, value)


def _redact_one(name: str, value: str) -> str:
    if _SECRET_NAME.search(name):
        return HIDDEN
    if name.lower() == "odbc_connect":
        return _ODBC_SECRET.sub(rf"\g<1>{HIDDEN}", unquote(value))
    return value
