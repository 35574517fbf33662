"""Run one benchmark case in this fresh interpreter and print its result as JSON.

Used by ``run.py`` (one process per case and repetition, for a clean peak RSS); by
hand: ``python benchmarks/worker.py A/durable workloads:sequential 2000``.
"""

import sys

from harness import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1:])
