"""mraa_jax.host_memory: the launch scripts' restart with glibc's huge-page tunable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mraa_jax import host_memory

# Restarts itself like launch_train.py, then counts the page faults of filling 256 MiB from
# glibc's malloc, as XLA allocates (NumPy would madvise huge pages on its own).
SCRIPT = textwrap.dedent(
    """
    import ctypes, json, os, resource
    print(json.dumps({"started": os.getpid()}), flush=True)
    from mraa_jax.host_memory import reexec_with_huge_pages
    reexec_with_huge_pages()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(libc.malloc(2**28), 1, 2**28)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"pid": os.getpid(), "tunables": os.environ.get("GLIBC_TUNABLES", ""), "faults": faults}))
    """
)


@pytest.fixture
def thp(tmp_path, monkeypatch):
    """Point the module at a fake transparent-huge-page setting; returns a setter."""
    setting = tmp_path / "enabled"
    monkeypatch.setattr(host_memory, "_THP_SETTING", setting)
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.delenv(host_memory.OPT_OUT, raising=False)
    return setting.write_text


def test_environment_gets_the_tunable_once_and_keeps_others(thp):
    thp("always [madvise] never\n")
    env = host_memory.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/x"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/x"}
    assert host_memory.with_huge_pages(env) == env
    assert host_memory.with_huge_pages({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("setting", ["always madvise [never]\n", None])
def test_no_tunable_without_transparent_huge_pages(thp, setting):
    if setting:
        thp(setting)  # else: the file does not exist
    assert not host_memory.huge_pages_available()
    assert host_memory.with_huge_pages({"HOME": "/x"}) == {"HOME": "/x"}


def test_no_tunable_when_opted_out_or_on_old_glibc(thp, monkeypatch):
    thp("[always] madvise never\n")
    assert host_memory.huge_pages_available()
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.31"))
    assert not host_memory.huge_pages_available()
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv(host_memory.OPT_OUT, "0")
    assert not host_memory.huge_pages_available()


def test_restart_keeps_the_process_and_cuts_page_faults(tmp_path):
    """Where this machine allows it, the script restarts once, in the same process (PID),
    with the tunable, and filling 256 MiB then faults in 2 MiB pages, not 65536 small ones."""
    script = tmp_path / "restart.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True).stdout
    *starts, result = [json.loads(line) for line in out.splitlines()]
    small_pages = 2**28 // os.sysconf("SC_PAGE_SIZE")
    if host_memory.huge_pages_available():
        assert len(starts) == 2 and starts[0]["started"] == starts[1]["started"] == result["pid"]
        assert "glibc.malloc.hugetlb=1" in result["tunables"].split(":")
        assert result["faults"] < small_pages / 8, result
    else:
        assert len(starts) == 1 and result["tunables"] == ""
        assert result["faults"] >= small_pages / 2, result


def test_memory_stages_benchmark_reports_every_stage():
    """benchmarks/memory_stages.py (README, Speed) on the small config: one reading per stage,
    each peak at least the resident set it ends with, run with the tunable where available."""
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    command = [sys.executable, "benchmarks/memory_stages.py", "--what", "animation", "--config", "configs/shapes.py", "--size", "64", "--calls", "2", "--trim"]
    out = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, check=True).stdout
    report = json.loads(out.splitlines()[-1])
    assert [row["stage"] for row in report["stages"]] == ["import jax", "MRAA.random", "call 0", "call 1"]
    assert all(row["peak_mib"] >= row["rss_mib"] > 0 for row in report["stages"])
    assert report["glibc_hugetlb"] == host_memory.huge_pages_available()


def test_low_memory_schedule_is_added_once_and_never_overrides_the_user():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    host_memory.use_low_memory_schedule(env)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_cpu_enable_concurrency_optimized_scheduler=false"
    host_memory.use_low_memory_schedule(env)
    assert env["XLA_FLAGS"].count("concurrency_optimized_scheduler") == 1
    own = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    host_memory.use_low_memory_schedule(own)
    assert own == {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    empty = {}
    host_memory.use_low_memory_schedule(empty)
    assert empty == {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false"}


# Compiles (does not run) one program of the random initialisation of vox256's region
# predictor and prints XLA's account of its temporaries, with the scheduler flag or without.
TEMPORARIES = textwrap.dedent(
    """
    import sys
    from mraa_jax import host_memory
    if sys.argv[1] == "low":
        host_memory.use_low_memory_schedule()
    import jax
    from mraa_jax.config import load_config
    from mraa_jax.model import build_networks, init_variables
    networks = build_networks(load_config("configs/vox256.py").model_params)
    init = jax.jit(lambda key: init_variables(networks, key, (256, 256, 3), names=("region_predictor",)))
    print(init.lower(jax.random.PRNGKey(0)).compile().memory_analysis().temp_size_in_bytes)
    """
)


def test_low_memory_schedule_cuts_temporaries(tmp_path):
    """The flag reaches XLA when set before JAX starts, and XLA then needs less memory for
    the same program (README, Speed: vox256's training step 2195 -> 1385 MiB)."""
    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "temporaries.py"
    script.write_text(TEMPORARIES)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    def temporaries(schedule):
        out = subprocess.run([sys.executable, str(script), schedule], cwd=repo, capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.split()[-1])

    default, low = temporaries("default"), temporaries("low")
    assert low < 0.6 * default, (low, default)


def test_memory_is_released_around_long_compilations(monkeypatch):
    """`import mraa_jax` listens for JAX's compile events: malloc_trim before compiling a
    program whose lowering took a quarter second or more and after a compilation of a second
    or more, not around the many short ones."""
    import jax

    import mraa_jax  # noqa: F401  (registers the listener)

    calls = []
    monkeypatch.setattr(host_memory, "_malloc_trim", lambda pad: calls.append(pad))
    host_memory.release_memory_around_compiling()  # a second registration adds no listener
    jax.monitoring.record_event_duration_secs(host_memory._LOWERING_EVENT, 0.1)
    jax.monitoring.record_event_duration_secs(host_memory._BACKEND_COMPILE_EVENT, 0.2)
    assert calls == []
    jax.monitoring.record_event_duration_secs(host_memory._LOWERING_EVENT, 0.8)
    assert calls == [0]
    jax.monitoring.record_event_duration_secs(host_memory._BACKEND_COMPILE_EVENT, 1.5)
    jax.monitoring.record_event_duration_secs("/jax/some/other/event", 9.0)
    assert calls == [0, 0]
