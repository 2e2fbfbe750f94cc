"""What the command line removes from the messages it prints: a secret, only where a
secret can stand.

A secret is a URI's userinfo (``user:password`` before the ``@``) and the token
(``--token`` or ``$MILVUS_TOKEN``, the URIs of ``--uri`` and ``$MILVUS_URI``). It is
replaced by ``***`` in a message (a line on stderr, a pymilvus log line, an error's
reason) where it stands as a whole:

* the userinfo of any URI in the text (``scheme://userinfo@``), known or not;
* the exact token or userinfo where no character that could continue it touches it
  (so the token ``root:0`` is removed from ``root:0@host`` and ``'root:0'``, and
  nothing is removed from ``"code": 0``).

A password alone is not searched for: ``Milvus``, ``true`` or ``0`` are words and
data too. Data (a response, a ticket, JSON) is never passed through here: only the
messages inside it, its ``status.reason``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["Redactor", "userinfo"]

#: Any URI's userinfo: what stands between ``://`` and the ``@`` of its authority.
_USERINFO = re.compile(r"(?<=://)[^\s/@'\"]+(?=@)")
#: Characters that may continue a token (base64, JWTs, user:password).
_TOKEN_CHAR = r"[\w.:~+/=-]"


def userinfo(uri: str) -> str:
    """The ``user:password`` of ``uri`` (``""`` for none, or for a Lite path)."""
    return urlsplit(uri).netloc.rpartition("@")[0] if "://" in uri else ""


class Redactor:
    """Removes the secrets of ``uris`` and ``tokens`` from a message (module docstring)."""

    def __init__(self, uris: Iterable[str] = (), tokens: Iterable[str] = ()) -> None:
        secrets = {userinfo(uri) for uri in uris} | set(tokens)
        ordered = sorted(secrets - {""}, key=len, reverse=True)  # the longest first
        self._exact = [
            re.compile(rf"(?<!{_TOKEN_CHAR}){re.escape(secret)}(?!{_TOKEN_CHAR})")
            for secret in ordered
        ]
        self._userinfos = [re.compile(rf"(?<=://){re.escape(secret)}(?=@)") for secret in ordered]

    def __bool__(self) -> bool:
        return bool(self._exact)

    def __call__(self, text: str) -> str:
        for pattern in (*self._userinfos, *self._exact):
            text = pattern.sub("***", text)
        return _USERINFO.sub("***", text)
