"""Basic auth that a flood of wrong passwords cannot starve (exporter-toolkit's behaviour).

The contract, checked without timing anything: results are cached both ways, a cached answer
needs no bcrypt (it is given while another check holds bcrypt), an uncached credential is
refused rather than queued while bcrypt is busy, unknown users are refused, and the cache of
wrong credentials is bounded. The latency under a flood is benchmarks/auth_flood.py's.
"""

from __future__ import annotations

import base64
import time

import bcrypt
from flask import Flask

from exporter.web.auth import NEGATIVE_CACHE, BasicAuth


def _header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _auth() -> BasicAuth:
    return BasicAuth({"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode()})


def _fresh(auth: BasicAuth) -> BasicAuth:
    """As if the bcrypt budget (a share of a core) had been earned back."""
    auth._bcrypt_free_at = 0.0
    return auth


def _spent(auth: BasicAuth) -> BasicAuth:
    """As if a check had just used the bcrypt budget up (whatever the time a loaded machine
    lets pass between two lines of a test)."""
    auth._bcrypt_free_at = time.monotonic() + 3600
    return auth


def test_cached_answers_need_no_bcrypt_and_new_ones_do_not_queue() -> None:
    auth = _auth()
    before = time.monotonic()
    assert _fresh(auth).check(_header("prometheus", "right"))
    assert auth._bcrypt_free_at > before  # the check spent budget: it is earned back later
    assert not _spent(auth).check(_header("prometheus", "wrong"))  # over budget: refused, uncached
    assert len(auth._refused) == 0
    assert not _fresh(auth).check(_header("prometheus", "wrong"))  # checked: cached as wrong
    _fresh(auth)
    with auth._bcrypt:  # another request is running bcrypt
        assert auth.check(_header("prometheus", "right"))  # verified: cached
        assert not auth.check(_header("prometheus", "wrong"))  # refused: cached
        assert not auth.check(_header("prometheus", "other"))  # new: refused, not queued
    assert len(auth._refused) == 1  # "other" was not cached as wrong...
    assert not _fresh(auth).check(_header("prometheus", "other"))
    assert len(auth._refused) == 2  # ...until checked


def test_unknown_users_malformed_headers_and_the_bounded_cache() -> None:
    auth = _auth()
    for header in (None, "Bearer x", "Basic !!!", _header("nobody", "fakepassword")):
        assert not auth.check(header)
    assert _fresh(auth).check(_header("prometheus", "right"))
    for i in range(NEGATIVE_CACHE + 5):
        _fresh(auth).check(_header("prometheus", f"guess{i}"))
    assert len(auth._refused) == NEGATIVE_CACHE
    assert auth.check(_header("prometheus", "right"))  # a flood never evicts the good one


def test_protected_app_answers_401_with_a_challenge() -> None:
    app = Flask("t")
    app.add_url_rule("/metrics", "metrics", lambda: "ok")
    app.wsgi_app = _auth().protect(app.wsgi_app)
    client = app.test_client()
    refused = client.get("/metrics", headers={"Authorization": _header("prometheus", "no")})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="model-monitor"'
    assert refused.data == b"Unauthorized\n"
    assert (
        client.get("/metrics", headers={"Authorization": _header("prometheus", "right")}).data
        == b"ok"
    )
