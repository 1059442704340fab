"""The figures docs/performance.md keeps for each kind of CPU, in one run: `model.animate` from
plain Python in float32, without Winograd (every 3x3 layer direct), with XLA's default
convolutions (YNNPACK) and in bfloat16, alternately.

    python benchmarks/cpu_kind.py [--rounds 2]

Runs `benchmarks/animate_variants.py --variant V` for V in float32, direct, ynnpack, bfloat16, each in a
fresh process, --rounds times in turn (so that a slow hour shows in every variant alike), then
prints one Markdown row per variant (the range of the medians over the rounds, seconds per frame)
under the CPU's model and vector extensions, and the JSON of every run. For the floor and the
per-layer profile of the same kind, run `benchmarks/flops.py` and `benchmarks/animation_layers.py`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _measure import cpu_description

VARIANTS = ("float32", "direct", "ynnpack", "bfloat16")
SCRIPT = Path(__file__).with_name("animate_variants.py")


def run_variant(variant: str) -> dict:
    """One animate_variants.py run, its JSON line."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--variant", variant], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{SCRIPT.name} --variant {variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            runs[variant].append(run_variant(variant))
    cpu = cpu_description()
    print(f"CPU: {cpu['cpu']}; {' '.join(cpu['vector_extensions'] or [])}")
    print("| variant | s/frame (medians of each round) | first call s |\n|---|---|---|")
    for variant, results in runs.items():
        medians = sorted(r["median_s_per_frame"] for r in results)
        firsts = sorted(r["first_call_s"] for r in results)
        print(f"| {variant} | {medians[0]:.3f}-{medians[-1]:.3f} | {firsts[0]:.1f}-{firsts[-1]:.1f} |")
    print(json.dumps({"runs": runs, **cpu}, indent=2))


if __name__ == "__main__":
    main()
