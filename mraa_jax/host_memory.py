"""Host memory of XLA:CPU programs (Linux, glibc): fewer page faults, lower peaks.

`prepare_process()`, first thing in `launch_train.py`, `launch_eval.py` and the benchmarks:
- XLA:CPU's memory-minimising scheduler (`use_low_memory_schedule`, through XLA_FLAGS):
  vox256's training step needs 1385 MiB of temporaries instead of 2195, at the same speed;
  animation runs 3-7% slower, the small config's step 8-10%. Set the flag to true in
  XLA_FLAGS to keep XLA's default.
- Transparent huge pages for large blocks (`reexec_with_huge_pages`). XLA:CPU allocates a
  program's temporaries afresh on every call, glibc maps a block that large anew each time,
  and the kernel zero-fills it 4 KiB page by page: 644 000 page faults per vox256 training
  step. glibc's tunable `glibc.malloc.hugetlb=1` asks for 2 MiB pages on such mappings
  (madvise): 2 200 faults, the step 5-13% faster. glibc reads tunables only when a process
  starts, so the scripts re-execute themselves with it. MRAA_JAX_HUGE_PAGES=0 keeps glibc's
  default.
And `release_memory_around_compiling`, which `import mraa_jax` turns on: before compiling a
large program and after each long compilation, glibc hands what it holds freed back to the
kernel.
Measurements: README, Speed.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
# XLA:CPU orders a program by default for concurrency, independent branches side by side, each
# keeping its buffers alive; with this flag false it orders it to keep memory low instead.
# Only XLA_FLAGS sets it: jax.jit's compiler_options accept it but leave it unread (jax 0.10.2).
SCHEDULER_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
OPT_OUT = "MRAA_JAX_HUGE_PAGES"
# JAX's monitoring events (jax._src.dispatch): a program lowered to MLIR, then compiled.
_LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
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
    already set SCHEDULER_FLAG (either way). XLA reads the flags when JAX starts its backend, so this acts
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


def release_memory_around_compiling(min_seconds: float = 1.0, min_lowering_seconds: float = 0.25) -> None:
    """Release what glibc holds freed before compiling a large program (one whose lowering
    to MLIR took at least `min_lowering_seconds`) and after every compilation of at least
    `min_seconds`, in this process. Tracing and initialisation leave memory freed but kept,
    which compiling vox256's step then does not reuse: its peak 2706 -> 2545 MiB resident. And
    compiling leaves hundreds of MB freed, in small blocks between live ones, which the
    programs' buffers do not reuse: vox256's animation calls peaked at 1.17-1.23 GB
    resident, 0.80-0.82 GB with this (and the per-network random initialisation; README,
    Speed). `import mraa_jax` calls this once; calling it again adds nothing."""
    global _listening
    if _malloc_trim is None or _listening:
        return
    import jax

    def release(event: str, duration_s: float, **_) -> None:
        if (event == _LOWERING_EVENT and duration_s >= min_lowering_seconds) or (
            event == _BACKEND_COMPILE_EVENT and duration_s >= min_seconds
        ):
            release_freed_memory()

    jax.monitoring.register_event_duration_secs_listener(release)
    _listening = True


def _find_malloc_trim():
    if platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    return ctypes.CDLL("libc.so.6").malloc_trim


_malloc_trim = _find_malloc_trim()
_listening = False
