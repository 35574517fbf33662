"""Named fault points, for crash tests: the process kills itself at a chosen moment.

Disarmed unless the environment variable ``DURABLE_FAULTS`` is set when durable is
imported, so normal runs pay one falsy check per point. Its value is a comma list of
``point`` or ``point@detail`` (e.g. ``before-checkpoint@step-7``); when the engine
reaches a listed point it sends itself SIGKILL: no cleanup, no exception handler, like
a power cut of the process. Points:

- ``before-checkpoint@<step id>``: a step body returned, its checkpoint not written;
- ``after-checkpoint@<step id>``: the checkpoint committed, the task not yet returned;
- ``before-finish@<run id>`` / ``after-finish@<run id>``: around recording a run's outcome;
- ``after-commit``: inside a store, between a commit and the return to the engine
  (stores call ``durable.store.after_commit()``, the public hook).
"""

from __future__ import annotations

import os
import signal

ENV = "DURABLE_FAULTS"
_armed = frozenset(filter(None, (p.strip() for p in os.environ.get(ENV, "").split(","))))


def fault_point(name: str, detail: str = "") -> None:
    """Die here if the point (or the point at this detail) is armed."""
    if _armed and (name in _armed or f"{name}@{detail}" in _armed):
        os.kill(os.getpid(), signal.SIGKILL)
