"""Shared by the benchmarks: peak memory, and one measurement run in a fresh process."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_description() -> dict:
    """The CPU's model name and the vector extensions XLA:CPU can use (from /proc/cpuinfo, Linux):
    a speed figure means nothing without them, and this project's machines change kind."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu": platform.processor() or platform.machine(), "vector_extensions": None}
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first CPU's
    wanted = ("avx2", "fma", "avx512", "amx", "avx_vnni")
    return {
        "cpu": f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})",
        "vector_extensions": sorted(f for f in fields.get("flags", "").split() if f.startswith(wanted)),
    }


def peak_memory() -> dict:
    """Peak RSS of this process so far (MiB) and, where the backend reports it (GPU), the
    device's peak bytes in use (MiB; None on CPU, whose memory is the RSS). Also whether this
    process runs with glibc's huge-page tunable (glibc_hugetlb; mraa_jax/process_tuning.py)."""
    import jax

    from mraa_jax.process_tuning import has_tunable

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),  # ru_maxrss is KiB on Linux
        "device_peak_mib": None if peak is None else round(peak / 2**20, 1),
        "glibc_hugetlb": has_tunable(),
    }


def median_seconds(fn, args, repeats: int) -> float:
    """Median seconds of `fn(*args)` (jitted; results awaited) over `repeats` calls after one warm-up."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_isolated(script: str, args: list[str]) -> dict:
    """Run `python script args` in a fresh process (its own compile caches and peak memory);
    its last line of output is a JSON object, returned."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: dict, columns: list[str]) -> str:
    """A plain-text table: one row per name, the given columns."""
    header = ["", *columns]
    lines = [[name, *("-" if r.get(c) is None else str(r[c]) for c in columns)] for name, r in rows.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line) for line in [header, *lines])


def emit(report: dict, summary: str, out) -> None:
    """Print the readable table and the JSON report; also write the JSON to `out` if given."""
    print(summary)
    text = json.dumps(report, indent=2)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    print(text)
