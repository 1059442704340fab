"""Large host buffers in transparent huge pages (Linux, glibc): fewer page faults per step.

XLA:CPU allocates a compiled program's temporaries afresh on every call (vox256's training
step at batch 2: one 2.3 GB block), glibc maps a block that large anew each time, and the
kernel zero-fills it 4 KiB page by page: 644 000 page faults per training step. glibc's
tunable `glibc.malloc.hugetlb=1` asks for transparent huge pages on such mappings (2 MiB, via
madvise): 2 200 faults, and vox256's step 5-13% faster (benchmarks/training_step.py;
README, Speed). glibc reads tunables only when a process starts, so `launch_train.py`,
`launch_eval.py` and the benchmarks re-execute themselves with it. Set MRAA_JAX_HUGE_PAGES=0
to keep glibc's default.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "MRAA_JAX_HUGE_PAGES"
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_available() -> bool:
    """True on Linux with glibc >= 2.35 (the tunable's first release) and transparent huge
    pages enabled ("always" or "madvise"), unless MRAA_JAX_HUGE_PAGES=0."""
    if os.environ.get(OPT_OUT) == "0" or not sys.platform.startswith("linux"):
        return False
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(p) for p in version.split(".")[:2]) < (2, 35):
        return False
    try:
        setting = _THP_SETTING.read_text()
    except OSError:
        return False
    return "[always]" in setting or "[madvise]" in setting


def has_tunable(environ=os.environ) -> bool:
    """Whether `environ`'s GLIBC_TUNABLES already holds the huge-page tunable."""
    return TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":")


def with_huge_pages(environ=os.environ) -> dict:
    """A copy of `environ` whose GLIBC_TUNABLES also holds the tunable (where available):
    the environment to start a process with."""
    env = dict(environ)
    if huge_pages_available() and not has_tunable(env):
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), TUNABLE]))
    return env


def reexec_with_huge_pages() -> None:
    """Replace this process (same PID, command line and environment) by one started with the
    tunable, where it is available and not yet set; otherwise return. Call it first thing in a
    script's `__main__` block, before any work that the restart would repeat."""
    env = with_huge_pages()
    if has_tunable(env) and not has_tunable():
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)
