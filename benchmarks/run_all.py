"""Run every benchmark in turn (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

if __name__ == "__main__":
    failed = 0
    for script in ("bench_data.py", "bench_models.py", "bench_md.py", "bench_amp.py",
                   "bench_eqv2.py"):
        print(f"\n=== {script} ===", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script)]) != 0
    sys.exit(1 if failed else 0)
