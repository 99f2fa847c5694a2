"""A/B of EquiformerV2's fused S² activation against the pure-torch path, in one process.

    python benchmarks/bench_eqv2_fused.py [--rounds 3] [--repeats 5] [PRESET ...]

Per preset: the training step of ``bench_eqv2.train_step`` (float32, batch of 4 of the
default dataset, forces and stress with ``create_graph``, backward of the loss) and the
float64 inference of the 256-atom Cu cell, fused and unfused alternately in ``--rounds``
rounds of ``--repeats`` calls each; CPU time of this process (1 thread), best call of all
rounds. On a shared machine the best CPU time is the least disturbed; compare the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_eqv2  # noqa: E402

from mlip_scaling.models.equiformer_v2 import fused  # noqa: E402


def best_ms(call: Callable[[], object], repeats: int) -> float:
    """Smallest CPU time (ms) of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return 1e3 * min(times)


def ab(call: Callable[[], object], rounds: int, repeats: int) -> dict[str, float]:
    """``{"fused": ms, "torch": ms}``: best of alternated rounds after one warm-up each."""
    best = {"fused": float("inf"), "torch": float("inf")}
    for _ in range(rounds):
        for label, enabled in (("fused", True), ("torch", False)):
            with fused.fused_kernels(enabled):
                call()
                best[label] = min(best[label], best_ms(call, repeats))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=list(bench_eqv2.TIMED))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not fused.available():
        print("no compiled fused kernels here: nothing to compare")
        return 1
    print(f"{'case':<28}{'fused ms':>10}{'torch ms':>10}{'speed-up':>10}")
    for name in args.presets:
        cases = {
            f"{name} train step": bench_eqv2.train_step(name),
            f"{name} inference f64": _inference(name),
        }
        for case, call in cases.items():
            t = ab(call, args.rounds, args.repeats)
            print(
                f"{case:<28}{t['fused']:>10.1f}{t['torch']:>10.1f}{t['torch'] / t['fused']:>9.2f}x",
                flush=True,
            )
    return 0


def _inference(name: str) -> Callable[[], object]:
    potential = bench_eqv2._potential(name, torch.float64).eval()
    data = bench_eqv2._batch([bench_eqv2.rattled_copper()], potential.cutoff, torch.float64)
    return lambda: potential(data)


if __name__ == "__main__":
    raise SystemExit(main())
