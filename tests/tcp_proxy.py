"""A real TCP forwarder on 127.0.0.1 that a test can break in the ways a network breaks.

Modes: `refuse` (open connections broken, new ones closed at once: a store going down), `hang`
(connections stay open but nothing flows either way, and new ones are held unanswered: a frozen
proxy or server), `reset_after(n)` (the next n bytes from the store pass, then both ends are
reset: a connection dropped in the middle of a read) and `slow(delay)` (every chunk waits).
`restore()` goes back to forwarding normally.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Drop a connection abruptly, as a crashed peer or middlebox does. The shutdown wakes the
    thread blocked reading the other direction (a bare close would not while it reads, and
    the peer would see nothing: a hang, not a reset); lingering 0 makes the close an RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._mode = "forward"
        self._flowing = threading.Event()
        self._flowing.set()
        self._delay = 0.0
        self._reset_budget: int | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._mode == "refuse":
                client.close()
                continue
            if self._mode == "hang":
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_store: bool) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                if self._delay:
                    time.sleep(self._delay)
                if from_store and self._reset_budget is not None:
                    with self._lock:
                        budget = self._reset_budget
                        if budget is not None and len(data) > budget:
                            dst.sendall(data[:budget])
                            self._reset_budget = None
                            _reset(dst)
                            _reset(src)
                            return
                        if budget is not None:
                            self._reset_budget = budget - len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _break_open(self) -> None:
        with self._lock:
            for conn in self._conns + self._held:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
            self._conns.clear()
            self._held.clear()

    def refuse(self) -> None:
        """Break open connections and close new ones at once, like a store going down."""
        self._mode = "refuse"
        self._break_open()

    cut = refuse

    def hang(self) -> None:
        """Keep every connection open but let nothing through; hold new ones unanswered."""
        self._mode = "hang"
        self._flowing.clear()

    def reset_after(self, nbytes: int) -> None:
        """Let `nbytes` more bytes come from the store, then reset the connection carrying them."""
        self._reset_budget = nbytes

    def slow(self, delay: float) -> None:
        """Delay every chunk, in both directions, by `delay` seconds."""
        self._delay = delay

    def restore(self) -> None:
        """Forward normally again; connections held or frozen while hanging are broken."""
        hung = self._mode == "hang"
        self._mode = "forward"
        self._delay = 0.0
        self._reset_budget = None
        if hung:
            self._break_open()
        self._flowing.set()

    def close(self) -> None:
        self.refuse()
        self._server.close()
