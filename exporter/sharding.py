"""Splitting the configured models across exporter replicas (`serve --shard I/N`).

Every replica reads the same config; each keeps the models whose shard is its own. A model's
shard is chosen by rendezvous hashing (highest random weight) of its id: deterministic in every
process and Python version (SHA-256, not `hash()`), spread evenly, and when N changes only the
models that must move do (about 1/N of them), so a resharded deployment rebuilds few windows.
On Kubernetes a StatefulSet gives each pod an ordinal in its name: `--shard auto/N` takes it.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written: 2/4 is the second of four
    count: int

    def owns(self, model_id: str) -> bool:
        return shard_of(model_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(model_id: str, count: int) -> int:
    """The shard (1..count) that monitors `model_id`."""

    def weight(shard: int) -> bytes:
        return hashlib.sha256(f"{shard}\0{model_id}".encode()).digest()

    return max(range(1, count + 1), key=weight)


def parse_shard(text: str, hostname: str | None = None) -> Shard:
    """`I/N` (1 <= I <= N), or `auto/N`: I from the ordinal that ends the host name (a
    StatefulSet pod `model-monitor-2` is shard 3/N)."""
    match = re.fullmatch(r"(\d+|auto)/(\d+)", text.strip())
    if match is None:
        raise ValueError(f"--shard {text!r}: write I/N, e.g. 2/4 (the second of four), or auto/N")
    count = int(match.group(2))
    if match.group(1) == "auto":
        host = hostname if hostname is not None else socket.gethostname()
        ordinal = re.search(r"-(\d+)$", host)
        if ordinal is None:
            raise ValueError(
                f"--shard auto/{count}: the host name {host!r} does not end in -<ordinal> "
                "(a StatefulSet pod's does); give the shard as I/N"
            )
        index = int(ordinal.group(1)) + 1
    else:
        index = int(match.group(1))
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: the shard must be between 1 and {count}")
    return Shard(index, count)
