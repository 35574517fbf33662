"""Durable sleep: a reminder that survives a crash in the middle of its wait.

    python examples/operations_reminder.py

The workflow sends a welcome message, sleeps durably (``wf.sleep``), sends a reminder,
then waits for an acknowledgement with a timeout (``wf.signal(..., timeout=...)``)
and escalates when none comes in time.

Run 1 happens in a child process that is killed with SIGKILL while it sleeps. Run 2
calls the same workflow in a fresh process: the welcome replays from the SQLite file,
and the run wakes at the time run 1 checkpointed, not a whole sleep after the restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from durable import SignalTimeoutError, Workflow

SLEEP = 1.5  # seconds; think "three days"
KILL_AFTER = 0.5  # seconds into the sleep
ACK_TIMEOUT = 0.5  # seconds; think "a week"


def clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S.%f")[:-4]


async def remind_in_this_process(db: Path, crash: bool) -> None:
    started = time.time()
    wf = Workflow("reminders", db=db, default_retries=0)

    @wf.task
    async def send_welcome(user: str) -> str:
        print(f"  ran       send_welcome({user!r})", flush=True)
        if crash:  # a real crash, in the middle of the sleep that follows
            print(f"  sleeping  {SLEEP} s, from {clock(time.time())}", flush=True)
            loop = asyncio.get_running_loop()
            loop.call_later(KILL_AFTER, os.kill, os.getpid(), signal.SIGKILL)
        return f"welcome sent to {user}"

    @wf.task
    async def send_reminder(user: str) -> float:
        print(f"  ran       send_reminder({user!r})", flush=True)
        return time.time()

    @wf.task
    async def escalate(user: str) -> str:
        print(f"  ran       escalate({user!r}): no acknowledgement in time", flush=True)
        return f"escalated {user}"

    @wf.workflow(id="reminder-{user}")
    async def reminder(user: str) -> str:
        await send_welcome(user)
        await wf.sleep(SLEEP)
        await send_reminder(user)
        try:
            await wf.signal("ack", timeout=ACK_TIMEOUT, poll=0.1)
        except SignalTimeoutError:
            return await escalate(user)
        return f"{user} acknowledged"

    async with wf:
        # Show what is already checkpointed when this process starts.
        run = await wf.get_run("reminder-ann")
        for step in run.steps if run else ():
            if step.step_id == "$sleep":
                print(f"  found     the sleep step: wake up at {clock(step.value['wake_at'])}")
            else:
                print(f"  replays   {step.step_id}")
        result = await reminder("ann")
        run = await wf.get_run("reminder-ann")
        assert run is not None
        steps = {step.step_id: step.value for step in run.steps}
        wake_at, woke = steps["$sleep"]["wake_at"], steps["send_reminder"]
        print(
            f"  woke      at {clock(woke)}, {woke - wake_at:+.2f} s from the checkpointed "
            f"wake-up time, {woke - started:.2f} s after this process started"
        )
        print(f"  result    {result!r}")
        print(f"  steps     {', '.join(steps)}")
        late = await wf.complete("reminder-ann", "ack", {"by": "ann"})
        print(f"  a late acknowledgement is refused: complete() returned {late}")


def run_child(db: Path, crash: bool) -> int:
    args = [sys.executable, __file__, "--child", str(db)] + (["--crash"] if crash else [])
    return subprocess.run(args, check=False).returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "reminders.db"
        print(f"checkpoints go to {db}\n")
        print("run 1: reminder('ann'), killed while it sleeps")
        code = run_child(db, crash=True)
        print(
            f"  ** process killed (SIGKILL) {KILL_AFTER} s into the sleep (exit code {code}) **\n"
        )
        print("run 2: the same call in a new process")
        code = run_child(db, crash=False)
        if code != 0:
            sys.exit(code)
        print("\nThe restarted run slept only what was left of the original sleep.")


if __name__ == "__main__":
    logging.getLogger("durable").setLevel(logging.ERROR)  # quiet "taking it over"
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        asyncio.run(remind_in_this_process(Path(sys.argv[2]), crash="--crash" in sys.argv))
    else:
        main()
