"""The command line removes a secret from a message only where a secret stands
(``_redact``): never a word, a number or a key that happens to spell a password."""

from __future__ import annotations

import json
import secrets

import pytest

from pymilvus_flushsync._redact import Redactor

#: The random one has a fixed id: every pytest-xdist worker collects the same tests.
PASSWORDS = [
    *("0", "1", "a", "true", "default", "Milvus", "root"),
    pytest.param(secrets.token_urlsafe(24), id="random"),
]
DATA = json.dumps(
    {"flushed": True, "status": {"code": 0, "error_code": "Success", "reason": ""},
     "db_name": "default", "collections": {"a": {"flush_ts": 0, "seal_time": 1}}},
    indent=2,
)  # fmt: skip
MESSAGE = "Milvus: cannot connect to 127.0.0.1:1 (code 1): default database, true or 0"


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_secret_goes_where_it_stands_and_nothing_else_changes(password: str) -> None:
    token, uri = f"root:{password}", f"http://root:{password}@127.0.0.1:1"
    redact = Redactor([uri, "./milvus.db"], [token])
    assert redact(DATA) == DATA and redact(MESSAGE) == MESSAGE
    assert (
        redact(f"cannot connect to {uri}: Fail") == "cannot connect to http://***@127.0.0.1:1: Fail"
    )
    assert redact(f"token '{token}' refused") == "token '***' refused"
    assert redact(f"alias {uri}-default") == "alias http://***@127.0.0.1:1-default"


def test_any_uri_userinfo_goes_even_an_unknown_one_and_a_password_with_an_at() -> None:
    redact = Redactor(["http://u:p@ss@h:1"])
    assert (
        redact("at http://u:p@ss@h:1 and https://x:y@z:2/")
        == "at http://***@h:1 and https://***@z:2/"
    )
    assert not Redactor() and Redactor([], ["t"])
    assert Redactor()("http://a:b@c") == "http://***@c"
