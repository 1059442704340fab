"""CPU process tuning for XLA:CPU programs (Linux, glibc): less memory, fewer page faults.

Nothing here acts on import. The launch scripts and benchmarks call
`tune_process(restart_with_huge_pages=True)` first thing; a library user who wants the same
calls `mraa_jax.process_tuning.tune_process()` once, before the first JAX computation. It:
- turns on XLA:CPU's memory-minimising scheduler (XLA_FLAGS, read when JAX starts its
  backend): training steps need far less memory for temporaries at about the same speed,
  animation runs a few percent slower. Setting the flag yourself in XLA_FLAGS wins.
- hands what glibc holds freed back to the kernel before compiling a large program and after
  each long compilation (compiling leaves hundreds of MB freed in small blocks that the
  programs' buffers do not reuse);
- with `restart_with_huge_pages`, restarts the script with glibc's tunable
  `glibc.malloc.hugetlb=1`: XLA:CPU allocates a program's temporaries afresh on every call
  and the kernel zero-fills each new mapping page by page; 2 MiB pages make that a few
  thousand faults instead of hundreds of thousands. MRAA_JAX_HUGE_PAGES=0 opts out.
Every program of the library (training steps, animation, streaming) compiles with
`cpu_compiler_options(devices)`, the convolution option for CPUs. Each XLA option is used only
where the installed jaxlib accepts it; otherwise it is left out with one warning. Figures:
docs/performance.md.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "MRAA_JAX_HUGE_PAGES"
# XLA:CPU orders a program by default for concurrency, independent branches side by side, each
# keeping its buffers alive; with this flag false it orders it to keep memory low instead.
# Only XLA_FLAGS sets it: jax.jit's compiler_options accept it but leave it unread.
SCHEDULER_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
# The library's option on CPU: XLA:CPU's YNNPACK fusions without its convolutions (its default
# list also has LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION), so that Eigen runs them: YNNPACK's
# kernel gradients are several times slower, and its forward 3x3 convolutions slower too
# (modules/conv.py runs the thin 7x7 layers, where Eigen is slow, in a form it runs fast).
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
}
# JAX's monitoring events (recorded in jax/_src/dispatch.py; tests/test_process_tuning.py fails
# if JAX stops recording them): a program lowered to MLIR, then compiled.
LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# Starts an XLA:CPU client with the XLA_FLAGS it is given: XLA ends the process if a flag is unknown.
_FLAG_PROBE = "import jaxlib._jax as xla; xla.get_tfrt_cpu_client()"


def tune_process(restart_with_huge_pages: bool = False) -> None:
    """The memory-minimising scheduler and memory release around compiling, for this process;
    with `restart_with_huge_pages` (scripts, first thing in `__main__`), the restart with
    glibc's huge-page tunable in between (same process id; the restarted process keeps the
    scheduler flag and tunes itself again without a second restart)."""
    use_low_memory_schedule()
    if restart_with_huge_pages:
        reexec_with_huge_pages()
    release_memory_around_compiling()


def use_low_memory_schedule(environ=os.environ) -> None:
    """Add XLA:CPU's memory-minimising scheduler to `environ`'s XLA_FLAGS, unless the flags
    already set SCHEDULER_FLAG (either way) or the installed jaxlib does not know it (then one
    warning). Acts only before JAX starts its backend, or for processes started with `environ`."""
    flags = environ.get("XLA_FLAGS", "")
    if SCHEDULER_FLAG in flags:
        return
    flag = f"--{SCHEDULER_FLAG}=false"
    if xla_flag_accepted(flag):
        environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


@functools.cache
def xla_flag_accepted(flag: str) -> bool:
    """Whether the installed jaxlib starts with `flag` in XLA_FLAGS (checked in a subprocess,
    about half a second); if not, one warning says that it is left out."""
    env = {**os.environ, "XLA_FLAGS": flag}
    probe = subprocess.run([sys.executable, "-c", _FLAG_PROBE], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        warnings.warn(f"XLA flag {flag} left out: this jaxlib refuses it ({reason})", RuntimeWarning, stacklevel=2)
    return probe.returncode == 0


def cpu_compiler_options(devices) -> dict | None:
    """`CPU_COMPILER_OPTIONS` where `devices` are CPUs, less any option the installed
    jaxlib refuses; None (jax.jit's default) elsewhere."""
    if devices[0].platform != "cpu":
        return None
    return accepted_compiler_options(CPU_COMPILER_OPTIONS) or None


def accepted_compiler_options(options: dict) -> dict:
    """The entries of `options` that jax.jit accepts as compiler_options on the CPU; each
    refused one is left out with one warning."""
    return {name: value for name, value in options.items() if _compiler_option_accepted(name, value)}


@functools.cache
def _compiler_option_accepted(name: str, value) -> bool:
    import jax
    import jax.numpy as jnp

    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(jnp.zeros((), jnp.float32)).compile()
    except jax.errors.JaxRuntimeError as e:
        warnings.warn(
            f"XLA compiler option {name}={value} left out: {str(e).splitlines()[0]}", RuntimeWarning, stacklevel=3
        )
        return False
    return True


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
    tunable, where it is available and not yet set; otherwise return. glibc reads tunables only
    when a process starts, hence the restart: call it first thing in a script's `__main__`
    block, before any work that the restart would repeat."""
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
    `min_seconds`, in this process, through a JAX monitoring listener. Tracing leaves memory
    freed but kept that compiling does not reuse, and compiling leaves freed blocks between
    live ones that the programs' buffers do not reuse. Registering twice adds nothing."""
    global _listening
    if _malloc_trim is None or _listening:
        return
    import jax

    def release(event: str, duration_s: float, **_) -> None:
        if (event == LOWERING_EVENT and duration_s >= min_lowering_seconds) or (
            event == BACKEND_COMPILE_EVENT and duration_s >= min_seconds
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
