"""examples/identity.py (the README's Identity section) runs and shows what it claims."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "identity.py"


def test_the_identity_example_runs_as_the_readme_says() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "quotes: [9.0, 10.8, 9.9]"  # in carrier order, whoever answered first
    assert out[1] == "steps:  " + ", ".join(
        f"${branch}/{name}" for branch in range(3) for name in ("apply_discount", "fetch_rate")
    )
    assert out[2] == "again:  [9.0, 10.8, 9.9] (executed 0 steps)"
    assert out[3] == "ship:   ['charged 1.5', 'charged 2.5', 'label:p1', 'label:p2', 'label:p3']"
    assert out[4] == "refund: RunConflictError"
    assert out[5] == "ship p9: InputsConflictError - parameters that differ: parcels"
    assert out[6] == "twice:  StepIdConflictError"
