"""Run every benchmark in turn (``make bench``); bench_train.py with its default budgets
(120 CPU-s of training per model, run in parallel; about 9 minutes with the dataset,
MACE evaluations and inference)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

if __name__ == "__main__":
    failed = 0
    for script in ("bench_data.py", "bench_models.py", "bench_md.py", "bench_amp.py",
                   "bench_eqv2.py", "bench_families.py", "bench_train.py"):
        print(f"\n=== {script} ===", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script)]) != 0
    sys.exit(1 if failed else 0)
