"""Basic auth for the exporter's endpoints, checked the way Prometheus' exporter-toolkit does."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import bcrypt

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# bcrypt of "fakepassword": checked for unknown users, so that timing does not tell which user
# names exist (as exporter-toolkit does).
_DECOY_HASH = b"$2b$10$YCvA.Z22vTFlD.UEWVoAa.tNnLVUxa8edya2TUWcSHPqirx.RsYdq"
_CHALLENGE = [
    ("WWW-Authenticate", 'Basic realm="model-monitor"'),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", "13"),
]
NEGATIVE_CACHE = 1024  # wrong credentials remembered (least recently used dropped)
REFUSAL_DELAY = 0.25  # seconds a refused request waits before its 401 (as sshd's failure delay)
BCRYPT_SHARE = 0.25  # at most this share of one core goes to checking credentials not cached


class BasicAuth:
    """Checks credentials against bcrypt hashes the way exporter-toolkit does, so that wrong
    passwords cannot starve scrapes: a result is cached both ways (verified credentials in a
    set a flood cannot evict, wrong ones in a bounded LRU), and bcrypt runs one check at a time,
    within `BCRYPT_SHARE` of a core; a credential that finds bcrypt busy is refused uncached, so
    during a flood of new wrong passwords a credential not yet verified may need a retry (a
    verified one never waits).

    A refused request is answered after `REFUSAL_DELAY`, which bounds what a client retrying
    in a loop can make the worker do (20 such clients: 75 requests/s instead of 1,000+). The
    delay holds a worker thread (asleep, without the interpreter lock), so at most
    `delay_slots` refusals wait at once, fewer than the worker's threads: scrapes always find
    a thread; refusals beyond that are answered at once.
    """

    def __init__(self, users: dict[str, str], delay_slots: int = 2) -> None:
        self.users = users
        self._verified: set[bytes] = set()
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()  # guards the caches
        self._bcrypt = threading.Lock()  # one bcrypt at a time: it is CPU-bound by design
        self._bcrypt_free_at = 0.0  # monotonic time from which the next bcrypt may start
        self._delays = threading.BoundedSemaphore(max(1, delay_slots))

    def protect(self, app: WSGIApplication) -> WSGIApplication:
        """`app` behind basic auth. Checked before Flask sees the request: a refused request
        costs no routing, request context or response object, which keeps a flood of wrong
        passwords cheap for the worker that also serves the scrapes."""

        def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if self.check(environ.get("HTTP_AUTHORIZATION")):
                return app(environ, start_response)
            if self._delays.acquire(blocking=False):
                try:
                    time.sleep(REFUSAL_DELAY)
                finally:
                    self._delays.release()
            start_response("401 Unauthorized", _CHALLENGE)
            return [b"Unauthorized\n"]

        return guarded

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        known = user in self.users
        hashed = self.users[user].encode() if known else _DECOY_HASH
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password.encode()))).digest()
        with self._lock:
            if key in self._verified:
                return True
            if key in self._refused:
                self._refused.move_to_end(key)
                return False
        if time.monotonic() < self._bcrypt_free_at or not self._bcrypt.acquire(blocking=False):
            return False  # bcrypt busy or over its budget: refused now, not queued
        try:
            started = time.monotonic()
            ok = bcrypt.checkpw(password.encode(), hashed) and known
            ended = time.monotonic()
            self._bcrypt_free_at = ended + (ended - started) * (1 / BCRYPT_SHARE - 1)
        finally:
            self._bcrypt.release()
        with self._lock:
            if ok:
                self._verified.add(key)
            else:
                self._refused[key] = None
                if len(self._refused) > NEGATIVE_CACHE:
                    self._refused.popitem(last=False)
        return ok
