"""Large host buffers in transparent huge pages (Linux, glibc): fewer page faults per step.

XLA:CPU allocates a compiled program's temporaries afresh on every call (vox256's training
step at batch 2: one 2.3 GB block), glibc maps a block that large anew each time, and the
kernel zero-fills it 4 KiB page by page: 644 000 page faults per training step. glibc's
tunable `glibc.malloc.hugetlb=1` asks for transparent huge pages on such mappings (2 MiB, via
madvise): 2 200 faults, and vox256's step 5-13% faster (benchmarks/training_step.py;
README, Speed). glibc reads tunables only when a process starts, so `launch_train.py`,
`launch_eval.py` and the benchmarks re-execute themselves with it. Set MRAA_JAX_HUGE_PAGES=0
to keep glibc's default.

Also: `release_memory_after_compiling`, which `import mraa_jax` turns on, hands the memory
that XLA's compiler freed back to the kernel after each compilation.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
# XLA:CPU orders a program by default for concurrency, independent branches side by side, each
# keeping its buffers alive; with this flag false it orders it to keep memory low instead.
# vox256's training step at batch 2 (2 cores): temporaries 2195 -> 1385 MiB, same step time,
# same losses (README, Speed). Only XLA_FLAGS sets it: jax.jit's compiler_options leave it unread.
SCHEDULER_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
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


def use_low_memory_schedule(environ=os.environ) -> None:
    """Add XLA:CPU's memory-minimising scheduler to `environ`'s XLA_FLAGS, unless the flags
    already choose a scheduler. XLA reads the flags when JAX starts its backend, so this acts
    only before the first JAX computation (and for processes started with `environ`). The flag
    names XLA:CPU's scheduler only; other backends ignore it."""
    flags = environ.get("XLA_FLAGS", "")
    if SCHEDULER_FLAG not in flags:
        environ["XLA_FLAGS"] = f"{flags} --{SCHEDULER_FLAG}=false".strip()


def prepare_process() -> None:
    """What the launch scripts and benchmarks do first: the memory-minimising scheduler, then
    the restart with huge pages (same process id)."""
    use_low_memory_schedule()
    reexec_with_huge_pages()


def reexec_with_huge_pages() -> None:
    """Replace this process (same PID, command line and environment) by one started with the
    tunable, where it is available and not yet set; otherwise return. Call it first thing in a
    script's `__main__` block, before any work that the restart would repeat."""
    env = with_huge_pages()
    if has_tunable(env) and not has_tunable():
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)



def release_freed_memory() -> None:
    """Hand back to the kernel what glibc's malloc holds freed (malloc_trim(0)); no-op elsewhere."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def release_memory_after_compiling(min_seconds: float = 1.0) -> None:
    """After every XLA compilation of at least `min_seconds` in this process, release what
    the compiler freed. Compiling leaves hundreds of MB freed but kept by glibc, scattered
    between live blocks, and the next program's buffers do not reuse it (another thread's
    arena): vox256's animation peaked at 1.17 GB of resident memory with it, 0.80 GB without
    (README, Speed). `import mraa_jax` calls this once; calling it again adds nothing."""
    global _listening
    if _malloc_trim is None or _listening:
        return
    import jax

    def after(event: str, duration_s: float, **_) -> None:
        if event == _BACKEND_COMPILE_EVENT and duration_s >= min_seconds:
            release_freed_memory()

    jax.monitoring.register_event_duration_secs_listener(after)
    _listening = True


def _find_malloc_trim():
    if platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    return ctypes.CDLL("libc.so.6").malloc_trim


_malloc_trim = _find_malloc_trim()
_listening = False
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT
