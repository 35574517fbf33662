"""Where a run's data lives in Redis.

A run is one hash, named with the Cluster hash tag ``{<run id>}``::

    <prefix>:{<run id>}       hash, with the fields
        workflow, status, inputs, result, has_result, error, owner, lease, created,
        updated, recoveries, cancel_requested, input_digest, recoveries_without_progress
                                  the run record (JSON or text; times in epoch seconds;
                                  input_digest is absent for runs recorded without one)
        finished_by               the owner that recorded the outcome (until a claim)
        orphan_claim              the token of the claim_orphans call that took the
                                  run (until the next claim)
        step:<step id>            a step: attempt and time, then its result (JSON)
        signal:<name>             a signal: delivery token and time, then its payload
    <prefix>:{<run id>}:attempts  hash: step id -> failed attempts so far (a step
                                  retrying, or one whose process died in a backoff)

Every script that changes a run takes both keys (the hash tag puts them in one Cluster
slot) and sets the TTL of both, so the run expires as a whole; a checkpoint is one
``HSET`` plus the ``PEXPIRE`` of each in one Lua script. The attempts live apart so
that reading them (``load_attempts``) does not read a run's steps. Two keys per prefix
are shared by all runs:

    <prefix>:runs             sorted set: run id -> creation time (for list_runs)
    <prefix>:signals          pub/sub channel: [run id, signal name] per delivery,
                              [run id] per cancellation request
"""

from __future__ import annotations

from dataclasses import dataclass

#: Hash fields of the run record (every other field is a step or a signal).
RECORD_FIELDS = (
    "workflow", "status", "inputs", "result", "has_result", "error", "owner", "lease",
    "created", "updated", "recoveries", "cancel_requested", "input_digest",
    "recoveries_without_progress",
)  # fmt: skip
STEP = "step:"
SIGNAL = "signal:"
#: After a run's key: the key of its attempts hash. A run key ends with ``}``, so no
#: run id's key can end like this.
ATTEMPTS_SUFFIX = ":attempts"


def hash_tag(run_id: str) -> str:
    """The run id made safe inside ``{...}``: braces and ``%`` escaped, never empty.

    Redis takes the text between the first ``{`` and the next ``}`` as the hash tag,
    and hashes the whole key when that text is empty; so a ``}`` in a run id would
    cut the tag short, and an empty one would scatter a run's keys over slots. The
    escaping is one-to-one, so two run ids never share a key.
    """
    if not run_id:
        return "%"  # escaping never yields a lone "%", so no run id maps here
    return run_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """The names of every key and channel a store with this prefix uses."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError(
                f"the Redis key prefix must be non-empty text without braces, not "
                f"{self.prefix!r} (braces would put every run in one Cluster slot)"
            )

    @property
    def index(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:signals"

    def run_key(self, run_id: str) -> str:
        return f"{self.prefix}:{{{hash_tag(run_id)}}}"

    def run_keys(self, run_id: str) -> tuple[str, str]:
        """The run's hash and its attempts hash: the two keys every script takes."""
        run = self.run_key(run_id)
        return run, run + ATTEMPTS_SUFFIX

    def attempts_key(self, run_id: str) -> str:
        return self.run_key(run_id) + ATTEMPTS_SUFFIX
