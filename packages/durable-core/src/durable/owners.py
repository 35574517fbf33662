"""Who holds a run's lease, and whether that holder is known to be gone."""

from __future__ import annotations

import os
import socket
import uuid

_HOST = socket.gethostname()


def new_owner_id() -> str:
    """Who holds a lease: ``host:pid:token``, so a dead local owner can be recognised."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    host, _, pid_text = (owner or "").rpartition(":")[0].rpartition(":")
    if host != _HOST or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
