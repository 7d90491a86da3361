"""Loopback servers standing in for Slack, PagerDuty (Events v2) and SMTP; they record what
they get."""

from __future__ import annotations

import email
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class Message:
    receiver: str
    at: float
    text: str  # everything a human would read, flattened
    resolved: bool


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def add(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)

    def find(
        self, receiver: str, *needles: str, resolved: bool | None = None, since: float = 0.0
    ) -> list[Message]:
        with self._lock:
            return [
                m
                for m in self.messages
                if m.receiver == receiver
                and m.at >= since
                and all(n in m.text for n in needles)
                and (resolved is None or m.resolved == resolved)
            ]


class _Handler(BaseHTTPRequestHandler):
    inbox: Inbox

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.startswith("/slack"):
            parts = [
                a.get("title", "") + "\n" + a.get("text", "") for a in body.get("attachments", [])
            ]
            text = "\n".join(parts) or body.get("text", "")
            self.inbox.add(Message("slack", time.time(), text, "RESOLVED" in text.split("]")[0]))
        elif self.path.startswith("/v2/enqueue"):  # PagerDuty Events API v2 contract
            assert body["routing_key"] and body["event_action"] in ("trigger", "resolve")
            text = json.dumps(body)
            self.inbox.add(
                Message("pagerduty", time.time(), text, body["event_action"] == "resolve")
            )
        self.send_response(202 if self.path.startswith("/v2/") else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "success"}')

    def log_message(self, *args: object) -> None:  # keep test output clean
        return


class _Smtp:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd API
        message = email.message_from_bytes(envelope.content)
        body = (
            message.get_payload(decode=True)
            if not message.is_multipart()
            else b"".join(
                part.get_payload(decode=True) or b""
                for part in message.walk()
                if not part.is_multipart()
            )
        )
        subject = str(message["Subject"])
        self.inbox.add(
            Message(
                "email",
                time.time(),
                subject + "\n" + body.decode(errors="replace"),
                subject.startswith("[RESOLVED"),
            )
        )
        return "250 OK"


class Receivers:
    """All three stand-ins, sharing one inbox."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        handler = type("Handler", (_Handler,), {"inbox": self.inbox})
        self._http = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.http_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.smtp_port = free_port()
        self._smtp = Controller(_Smtp(self.inbox), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()

    def close(self) -> None:
        self._http.shutdown()
        self._smtp.stop()
