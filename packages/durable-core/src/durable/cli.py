"""The ``durable`` command: look at and steer the runs in a store.

    durable runs list --db jobs.db [--status failed] [--workflow app.flow] [--json]
    durable runs show RUN_ID --db jobs.db
    durable runs cancel RUN_ID --db jobs.db
    durable runs resume RUN_ID --db jobs.db
    durable runs prune --older-than 7d [--status completed] --db jobs.db
    durable signal RUN_ID NAME '{"approved": true}' --db jobs.db
    durable stores

``--db`` defaults to $DURABLE_DB, then ``durable.db``. Exit status: 0 done, 1 nothing
to do (unknown run, a signal already delivered, a finished run to cancel), 2 bad
usage (and no database at a SQLite path given to ``runs list`` or ``runs show``,
which open SQLite read-only and never create a file), 3 the store failed (a bad
``--db`` included: one line on stderr, its password masked).

What a run holds (ids, workflow names, errors, step ids, payloads) is printed with
every character that is not printable escaped as in Python (``\n``, ``\x1b``,
``\u202e``), and cut to :data:`PREVIEW` characters in tables; ``--json`` is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .errors import DurableError, PluginError, StoreError
from .operations import cancel_run, run_with_history
from .plugins import DEFAULT_DB, installed_plugins, resolve_store
from .records import FINAL_STATUSES, RUN_STATUSES, RunRecord
from .serialization import Unserializable, to_json
from .settings import non_negative_int
from .store import Store
from .urls import mask_exception, mask_url, mask_urls_in

OK, NOTHING_DONE, USAGE, STORE_FAILED = 0, 1, 2, 3
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The longest a table cell is shown (longer ones end in "…").
PREVIEW = 60
#: A ``scheme://`` at the start of ``--db`` (as durable.plugins reads it).
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")

Command = Callable[[Store, argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return USAGE
    if args.command == "stores":  # needs no store
        return _stores(args)
    try:
        return _run_command(args)
    except Exception as exc:  # a traceback: with --db masked in its messages too
        mask_exception(exc, args.db)
        raise


class _CannotOpen(Exception):
    """The store of ``--db`` failed to set up (with ``error``, whatever it was)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _run_command(args: argparse.Namespace) -> int:
    """Run the command on the store of ``--db``; an error message that repeats the URL
    shows it with its password masked, on one line."""
    command: Command = args.command
    db: str = args.db
    try:
        store = resolve_store(db)  # refuses a bad URL (scheme, option) before any file
        if args.inspects and (path := _sqlite_file(store)) is not None:
            if not os.path.exists(path):
                _complain(f"no database at {mask_url(db)}")
                return USAGE
            store = resolve_store(_read_only(db))
    except (PluginError, ValueError, TypeError) as exc:  # a URL its factory refuses
        # (Anything else a factory raises is a bug of the plugin: a traceback, masked.)
        return _store_failed(exc, db)
    try:
        return asyncio.run(_with_store(store, command, args))
    except _CannotOpen as failed:
        return _store_failed(failed.error, db, getattr(store, "url", None))
    except (StoreError, PluginError) as exc:
        _complain(mask_urls_in(str(exc), db))
        return STORE_FAILED
    except DurableError as exc:
        _complain(mask_urls_in(str(exc), db))
        return NOTHING_DONE


async def _with_store(store: Store, command: Command, args: argparse.Namespace) -> int:
    try:
        await store.setup()
    except Exception as exc:  # a bad --db: a port, a parameter its client refuses...
        with contextlib.suppress(Exception):  # what it opened ends with the process
            await store.close()
        raise _CannotOpen(exc) from exc
    try:
        return await command(store, args)
    finally:
        await store.close()


def _sqlite_file(store: Store) -> str | None:
    """The file of the seed's SQLite store, as its URL resolved to it (None for another
    store, or SQLite in memory)."""
    try:
        from . import SQLiteStore
    except ImportError:  # durable-sqlite not installed: no store of --db is one
        return None
    if not isinstance(store, SQLiteStore):
        return None
    path: str = store.path
    return None if path in ("", ":memory:") else path


def _read_only(db: str) -> str:
    """A SQLite ``--db`` with ``mode=ro`` (unless it names a mode itself): read-only,
    it never creates, migrates or switches the file to WAL."""
    if _URL.match(db) is None:
        return f"sqlite:///{quote(db)}?mode=ro"
    base, hash_, fragment = db.partition("#")
    if "mode" in parse_qs(urlsplit(base).query):
        return db
    return f"{base}{'&' if '?' in base else '?'}mode=ro{hash_}{fragment}"


def _store_failed(exc: Exception, db: str, *urls: object) -> int:
    """Exit 3 with one line: a store's own error as it is, any other named by type."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (DurableError, ValueError)):  # not written for the user
        text = f"cannot open the store {mask_url(db)}: {type(exc).__name__}: {text}"
    _complain(mask_urls_in(text, db, *urls))
    return STORE_FAILED


def _complain(text: str) -> None:
    print(f"durable: {_safe(text)}", file=sys.stderr)


# -- commands ---------------------------------------------------------------------------


async def _list(store: Store, args: argparse.Namespace) -> int:
    runs = await store.list_runs(status=args.status, workflow=args.workflow, limit=args.limit)
    if args.json:
        _print_json([_run_json(run) for run in runs])
        return OK
    rows = [
        [run.run_id, run.workflow, run.status, _time(run.updated_at), _preview(run)] for run in runs
    ]
    _print_table(["RUN", "WORKFLOW", "STATUS", "UPDATED", "RESULT / ERROR"], rows)
    return OK


async def _show(store: Store, args: argparse.Namespace) -> int:
    run = await run_with_history(store, args.run_id)
    if run is None:
        return _not_found(args.run_id)
    if args.json:
        _print_json(_run_json(run, details=True))
        return OK
    fields = [
        ("run", run.run_id),
        ("workflow", run.workflow),
        ("status", run.status + (" (cancel requested)" if run.cancel_requested else "")),
        ("inputs", _json_text(run.inputs)),
        ("result", _json_text(run.result) if run.has_result else "-"),
        ("error", run.error or "-"),
        ("owner", run.owner or "-"),
        ("recoveries", str(run.recoveries)),
        ("created", _time(run.created_at)),
        ("updated", _time(run.updated_at)),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:<{width}}  {_safe(value)}")
    print()
    _print_table(
        ["STEP", "ATTEMPT", "AT", "RESULT"],
        [[s.step_id, str(s.attempt), _time(s.created_at), _text(s.value)] for s in run.steps],
    )
    if run.signals:
        print()
        _print_table(
            ["SIGNAL", "AT", "PAYLOAD"],
            [[s.name, _time(s.created_at), _text(s.payload)] for s in run.signals],
        )
    return OK


async def _cancel(store: Store, args: argparse.Namespace) -> int:
    run = await cancel_run(store, args.run_id)
    if run is None:
        return _not_found(args.run_id)
    shown = _safe(run.run_id)
    if run.cancel_requested:
        print(f"{shown}: cancel requested; it stops at its next step")
    elif run.status == "cancelled":
        print(f"{shown}: cancelled")
    else:
        print(f"{shown}: not cancelled, it is {run.status}", file=sys.stderr)
        return NOTHING_DONE
    return OK


async def _resume(store: Store, args: argparse.Namespace) -> int:
    before = await store.get_run(args.run_id)
    if before is None:
        return _not_found(args.run_id)
    shown = _safe(before.run_id)
    if before.status not in ("failed", "cancelled", "dead"):
        print(f"{shown}: nothing to resume, it is {before.status}", file=sys.stderr)
        return NOTHING_DONE
    await store.reopen_run(args.run_id)
    print(
        f"{shown}: reopened; a worker (wf.worker() or wf.recover()) of "
        f"{_safe(before.workflow)} resumes it from its checkpoints"
    )
    return OK


async def _prune(store: Store, args: argparse.Namespace) -> int:
    cutoff = dt.datetime.now(dt.UTC).timestamp() - args.older_than
    statuses = tuple(args.status) if args.status else FINAL_STATUSES
    deleted = await store.delete_runs(finished_before=cutoff, statuses=statuses)
    if args.json:
        _print_json({"deleted": deleted})
    else:
        print(f"deleted {deleted} run(s)")
    return OK


async def _signal(store: Store, args: argparse.Namespace) -> int:
    run, name = _safe(args.run_id), _safe(repr(args.name))
    if await store.set_signal(args.run_id, args.name, args.payload):
        print(f"{run}: signal {name} delivered")
        return OK
    print(f"{run}: signal {name} was already delivered", file=sys.stderr)
    return NOTHING_DONE


def _stores(args: argparse.Namespace) -> int:
    plugins = installed_plugins()
    if args.json:
        _print_json([dataclasses.asdict(plugin) for plugin in plugins])
        return OK
    kinds = {"durable.stores": "store", "durable.integrations": "integration"}
    _print_table(
        ["KIND", "NAME", "DISTRIBUTION", "PROVIDED BY"],
        [[kinds[p.group], p.name, p.distribution, p.target] for p in plugins],
    )
    return OK


# -- arguments ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durable", description="Look at and steer the runs of durable workflows."
    )
    commands = parser.add_subparsers(title="commands")
    store_options = argparse.ArgumentParser(add_help=False)
    store_options.add_argument(
        "--db",
        default=os.environ.get("DURABLE_DB") or DEFAULT_DB,  # empty: not set
        help="store URL or SQLite path (default: $DURABLE_DB or durable.db)",
    )
    store_options.add_argument("--json", action="store_true", help="print JSON")
    store_options.set_defaults(inspects=False)  # list and show only look: read-only

    runs = commands.add_parser("runs", help="list, show, cancel, resume and prune runs")
    actions = runs.add_subparsers(title="actions", required=True)
    listing = actions.add_parser("list", parents=[store_options], help="list runs, newest first")
    listing.add_argument("--status", choices=RUN_STATUSES)
    listing.add_argument("--workflow", help="workflow id, e.g. app.process_order")
    listing.add_argument("--limit", type=_limit, default=50)
    listing.set_defaults(command=_list, inspects=True)
    for name, command, about in (
        ("show", _show, "a run with its steps and signals"),
        ("cancel", _cancel, "stop a run at its next step"),
        ("resume", _resume, "reopen a failed, cancelled or dead run for a worker"),
    ):
        action = actions.add_parser(name, parents=[store_options], help=about)
        action.add_argument("run_id")
        action.set_defaults(command=command, inspects=command is _show)
    prune = actions.add_parser("prune", parents=[store_options], help="delete finished runs")
    prune.add_argument("--older-than", type=_age, required=True, help="e.g. 30m, 12h, 7d")
    prune.add_argument("--status", action="append", choices=FINAL_STATUSES)
    prune.set_defaults(command=_prune)

    signal = commands.add_parser("signal", parents=[store_options], help="deliver a signal")
    signal.add_argument("run_id")
    signal.add_argument("name")
    signal.add_argument(
        "payload", nargs="?", default=None, type=_json_payload, help="JSON (default: null)"
    )
    signal.set_defaults(command=_signal)

    stores = commands.add_parser("stores", help="installed store plugins and integrations")
    stores.add_argument("--json", action="store_true", help="print JSON")
    stores.set_defaults(command="stores")
    return parser


def _json_payload(text: str) -> Any:
    try:
        return to_json(json.loads(text))
    except (json.JSONDecodeError, Unserializable) as exc:
        raise argparse.ArgumentTypeError(f"the payload is not JSON: {exc}") from None


def _limit(text: str) -> int:
    try:
        return non_negative_int("--limit", int(text))
    except ValueError as exc:  # SettingError, or not an int at all
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of 0 or more") from exc


def _age(text: str) -> float:
    match = _AGE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30m, 12h or 7d")
    return float(match[1]) * _UNITS[match[2]]


# -- output -------------------------------------------------------------------------------


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    rows = [[_cut(_safe(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _run_json(run: RunRecord, details: bool = False) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    if not details:
        data.pop("steps")
        data.pop("signals")
    return data


def _preview(run: RunRecord) -> str:
    if run.status == "completed" and run.has_result:
        return _text(run.result)
    return run.error or ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def _safe(text: str) -> str:
    """``text`` with each character that is not printable (C0 and C1 controls, DEL,
    line separators, bidirectional overrides, lone surrogates ...) escaped as in a
    Python string literal: a value can neither drive the terminal nor add a line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _time(when: dt.datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def _not_found(run_id: str) -> int:
    print(f"durable: no run {run_id!r}", file=sys.stderr)
    return NOTHING_DONE


if __name__ == "__main__":
    sys.exit(main())
