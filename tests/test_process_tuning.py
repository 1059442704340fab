"""mraa_jax.process_tuning: nothing on import; the scheduler flag, memory release, restart with
glibc's huge-page tunable and the training programs' compiler option when asked, each XLA option
only where jaxlib accepts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mraa_jax import process_tuning

# Restarts itself like launch_train.py, then counts the page faults of filling 256 MiB from
# glibc's malloc, as XLA allocates (NumPy would madvise huge pages on its own).
SCRIPT = textwrap.dedent(
    """
    import ctypes, json, os, resource
    print(json.dumps({"started": os.getpid()}), flush=True)
    from mraa_jax.process_tuning import reexec_with_huge_pages
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
    monkeypatch.setattr(process_tuning, "_THP_SETTING", setting)
    monkeypatch.setattr(process_tuning.sys, "platform", "linux")
    monkeypatch.setattr(process_tuning.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.delenv(process_tuning.OPT_OUT, raising=False)
    return setting.write_text


def test_environment_gets_the_tunable_once_and_keeps_others(thp):
    thp("always [madvise] never\n")
    env = process_tuning.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/x"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/x"}
    assert process_tuning.with_huge_pages(env) == env
    assert process_tuning.with_huge_pages({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("setting", ["always madvise [never]\n", None])
def test_no_tunable_without_transparent_huge_pages(thp, setting):
    if setting:
        thp(setting)  # else: the file does not exist
    assert not process_tuning.huge_pages_available()
    assert process_tuning.with_huge_pages({"HOME": "/x"}) == {"HOME": "/x"}


def test_no_tunable_when_opted_out_or_on_old_glibc(thp, monkeypatch):
    thp("[always] madvise never\n")
    assert process_tuning.huge_pages_available()
    monkeypatch.setattr(process_tuning.platform, "libc_ver", lambda: ("glibc", "2.31"))
    assert not process_tuning.huge_pages_available()
    monkeypatch.setattr(process_tuning.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv(process_tuning.OPT_OUT, "0")
    assert not process_tuning.huge_pages_available()


def test_restart_keeps_the_process_and_cuts_page_faults(tmp_path):
    """Where this machine allows it, the script restarts once, in the same process (PID),
    with the tunable, and filling 256 MiB then faults in 2 MiB pages, not 65536 small ones."""
    script = tmp_path / "restart.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True).stdout
    *starts, result = [json.loads(line) for line in out.splitlines()]
    small_pages = 2**28 // os.sysconf("SC_PAGE_SIZE")
    if process_tuning.huge_pages_available():
        assert len(starts) == 2 and starts[0]["started"] == starts[1]["started"] == result["pid"]
        assert "glibc.malloc.hugetlb=1" in result["tunables"].split(":")
        assert result["faults"] < small_pages / 8, result
    else:
        assert len(starts) == 1 and result["tunables"] == ""
        assert result["faults"] >= small_pages / 2, result


@pytest.mark.slow
def test_memory_stages_benchmark_reports_every_stage():
    """benchmarks/memory_stages.py on the small config: one reading per stage,
    each peak at least the resident set it ends with, run with the tunable where available."""
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    command = [
        sys.executable,
        "benchmarks/memory_stages.py",
        "--what",
        "animation",
        "--config",
        "configs/shapes.py",
        "--size",
        "64",
        "--calls",
        "2",
        "--trim",
    ]
    out = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, check=True).stdout
    report = json.loads(out.splitlines()[-1])
    assert [row["stage"] for row in report["stages"]] == ["import jax", "MRAA.random", "call 0", "call 1"]
    assert all(row["peak_mib"] >= row["rss_mib"] > 0 for row in report["stages"])
    assert report["glibc_hugetlb"] == process_tuning.huge_pages_available()


def test_low_memory_schedule_is_added_once_and_never_overrides_the_user():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    process_tuning.use_low_memory_schedule(env)
    assert (
        env["XLA_FLAGS"]
        == "--xla_force_host_platform_device_count=2 --xla_cpu_enable_concurrency_optimized_scheduler=false"
    )
    process_tuning.use_low_memory_schedule(env)
    assert env["XLA_FLAGS"].count("concurrency_optimized_scheduler") == 1
    own = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    process_tuning.use_low_memory_schedule(own)
    assert own == {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    empty = {}
    process_tuning.use_low_memory_schedule(empty)
    assert empty == {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false"}


# Compiles (does not run) one program of the random initialisation of vox256's region
# predictor and prints XLA's account of its temporaries, with the scheduler flag or without.
TEMPORARIES = textwrap.dedent(
    """
    import sys
    from mraa_jax import process_tuning
    if sys.argv[1] == "low":
        process_tuning.use_low_memory_schedule()
    import jax
    from mraa_jax.config import load_config
    from mraa_jax.model import build_networks, init_variables
    networks = build_networks(load_config("configs/vox256.py").model_params)
    init = jax.jit(lambda key: init_variables(networks, key, (256, 256, 3), names=("region_predictor",)))
    print(init.lower(jax.random.PRNGKey(0)).compile().memory_analysis().temp_size_in_bytes)
    """
)


@pytest.mark.slow
def test_low_memory_schedule_cuts_temporaries(tmp_path):
    """The flag reaches XLA when set before JAX starts, and XLA then needs less memory for
    the same program (docs/performance.md)."""
    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "temporaries.py"
    script.write_text(TEMPORARIES)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    def temporaries(schedule):
        out = subprocess.run(
            [sys.executable, str(script), schedule], cwd=repo, capture_output=True, text=True, env=env, check=True
        )
        return int(out.stdout.split()[-1])

    default, low = temporaries("default"), temporaries("low")
    assert low < 0.6 * default, (low, default)


def test_memory_is_released_around_long_compilations(monkeypatch):
    """The listener trims before compiling a program whose lowering took a quarter second or
    more and after a compilation of a second or more, not around the many short ones."""
    import jax

    calls = []
    monkeypatch.setattr(process_tuning, "_malloc_trim", lambda pad: calls.append(pad))
    process_tuning.release_memory_around_compiling()
    process_tuning.release_memory_around_compiling()  # a second registration adds no listener
    jax.monitoring.record_event_duration_secs(process_tuning.LOWERING_EVENT, 0.1)
    jax.monitoring.record_event_duration_secs(process_tuning.BACKEND_COMPILE_EVENT, 0.2)
    assert calls == []
    jax.monitoring.record_event_duration_secs(process_tuning.LOWERING_EVENT, 0.8)
    assert calls == [0]
    jax.monitoring.record_event_duration_secs(process_tuning.BACKEND_COMPILE_EVENT, 1.5)
    jax.monitoring.record_event_duration_secs("/jax/some/other/event", 9.0)
    assert calls == [0, 0]


def test_jax_still_records_the_compile_events_the_listener_reads():
    """The event names come from JAX's internals (jax/_src/dispatch.py): compiling a program
    must record both, or the memory release silently stops."""
    import jax
    import jax.numpy as jnp

    seen = []
    jax.monitoring.register_event_duration_secs_listener(lambda event, duration, **_: seen.append(event))
    jax.jit(lambda x: x * 3 + 1).lower(jnp.zeros((7, 5))).compile()
    assert process_tuning.LOWERING_EVENT in seen and process_tuning.BACKEND_COMPILE_EVENT in seen, seen


# Imports mraa_jax and every one of its modules; prints what changed in the process.
UNTOUCHED = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys
    import jax
    from jax._src import monitoring

    LISTENERS = ("_event_listeners", "_event_duration_secs_listeners", "_event_time_span_listeners", "_scalar_listeners")

    def snapshot():
        return {"environ": dict(os.environ), "jax_config": {k: repr(v) for k, v in jax.config.values.items()},
                "listeners": {name: len(getattr(monitoring, name)) for name in LISTENERS}}

    before = snapshot()
    import mraa_jax
    names = [m.name for m in pkgutil.walk_packages(mraa_jax.__path__, "mraa_jax.")]
    for name in names:
        importlib.import_module(name)
    after = snapshot()
    changed = {part: sorted(k for k in set(before[part]) | set(after[part]) if before[part].get(k) != after[part].get(k))
               for part in before}
    print(json.dumps({"modules": len(names), "changed": changed}))
    """
)


def test_importing_the_library_leaves_the_process_untouched(tmp_path):
    """`import mraa_jax` and every submodule: the environment (XLA_FLAGS, GLIBC_TUNABLES, ...),
    JAX's configuration and its monitoring listeners are as they were."""
    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "untouched.py"
    script.write_text(UNTOUCHED)
    out = subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, check=True).stdout
    report = json.loads(out.splitlines()[-1])
    assert report["modules"] > 30
    assert report["changed"] == {"environ": [], "jax_config": [], "listeners": []}, report


def test_an_unknown_xla_flag_is_left_out_with_one_warning(monkeypatch):
    """An XLA flag that this jaxlib does not know would end the process when JAX starts; the
    probe finds it refused, the flags stay as they were and one warning names it."""
    assert process_tuning.xla_flag_accepted(f"--{process_tuning.SCHEDULER_FLAG}=false")
    monkeypatch.setattr(process_tuning, "SCHEDULER_FLAG", "xla_cpu_mraa_jax_no_such_flag")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    with pytest.warns(RuntimeWarning, match="xla_cpu_mraa_jax_no_such_flag") as caught:
        process_tuning.use_low_memory_schedule(env)
        process_tuning.use_low_memory_schedule(env)
    assert env == {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert len(caught) == 1


def test_an_unknown_compiler_option_is_left_out_with_one_warning(monkeypatch):
    """The training step compiles without a compiler option that this jaxlib refuses (one
    warning), and with the ones it accepts."""
    import jax

    from mraa_jax.training.steps import AXIS, data_parallel, make_mesh

    unknown = {"xla_cpu_mraa_jax_no_such_option": "1"}
    monkeypatch.setattr(process_tuning, "CPU_COMPILER_OPTIONS", {**unknown, **process_tuning.CPU_COMPILER_OPTIONS})
    with pytest.warns(RuntimeWarning, match="xla_cpu_mraa_jax_no_such_option") as caught:
        options = process_tuning.cpu_compiler_options(jax.devices())
        step = data_parallel(
            lambda state, x: (state, jax.lax.psum(x.sum(), AXIS)), make_mesh(jax.devices()[:1]), num_batch_args=1
        )
        state, total = step(jax.numpy.zeros(()), jax.numpy.ones((2, 3)))
    assert len(caught) == 1
    assert options == {k: v for k, v in process_tuning.CPU_COMPILER_OPTIONS.items() if k not in unknown}
    assert float(total) == 6.0


def test_tune_process_sets_the_flag_and_the_listener_only_when_called(tmp_path):
    script = tmp_path / "tune.py"
    script.write_text(
        textwrap.dedent(
            """
        import json, os
        import jax
        from jax._src import monitoring
        from mraa_jax import process_tuning
        os.environ.pop("XLA_FLAGS", None)
        listeners = len(monitoring._event_duration_secs_listeners)
        process_tuning.tune_process()
        print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "added": len(monitoring._event_duration_secs_listeners) - listeners}))
        """
        )
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == {"flags": f"--{process_tuning.SCHEDULER_FLAG}=false", "added": 1}
