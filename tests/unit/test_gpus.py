"""GPU allocation with a faked NVML (tests/fake_nvml/pynvml.py); the lock files and processes are real."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from workers import gpus
from workers.gpus import GpuAllocator, NoFreeGpuError

FAKE_NVML = Path(__file__).resolve().parent.parent / "fake_nvml" / "pynvml.py"


def _load_fake_nvml():
    """Load the fake NVML module once per process, under a name of its own."""
    if "fake_pynvml" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_NVML)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_pynvml"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["fake_pynvml"]


@pytest.fixture
def nvml(monkeypatch):
    monkeypatch.delenv("FAKE_NVML_FAIL", raising=False)
    monkeypatch.setenv("FAKE_NVML_GPUS", "4")
    module = _load_fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def _allocator(tmp_path: Path, nvml, sharing: int = 1, allowed=None) -> GpuAllocator:
    return GpuAllocator(tmp_path / "locks", nvml, sharing=sharing, allowed=allowed)


# --- helpers that run in child processes (fork) -------------------------------------------------------------------

def _hold_one(lock_dir: Path, results, release) -> None:
    module = _load_fake_nvml()
    allocator = GpuAllocator(lock_dir, module)
    try:
        lease = allocator.acquire(1)
    except NoFreeGpuError:
        results.put(("none", os.getpid()))
        return
    results.put(("gpu", lease.indices[0]))
    release.wait(30)
    lease.release()


def _churn(lock_dir: Path, rounds: int, results) -> None:
    module = _load_fake_nvml()
    allocator = GpuAllocator(lock_dir, module)
    intervals = []
    for _ in range(rounds):
        try:
            lease = allocator.acquire(1, wait=5.0)
        except NoFreeGpuError:
            continue
        start = time.monotonic()
        time.sleep(0.002)
        end = time.monotonic()
        index = lease.indices[0]
        lease.release()
        intervals.append((index, start, end))
    results.put(intervals)


def _hold_all_briefly(lock_dir: Path, ready) -> None:
    module = _load_fake_nvml()
    lease = GpuAllocator(lock_dir, module).acquire(4)
    ready.put(lease.indices)
    time.sleep(0.5)
    lease.release()


def _hold_all_forever(lock_dir: Path, ready) -> None:
    module = _load_fake_nvml()
    lease = GpuAllocator(lock_dir, module).acquire(4)
    ready.put(lease.indices)
    time.sleep(60)


# --- tests --------------------------------------------------------------------------------------------------------

def test_acquire_across_processes_gives_distinct_gpus(tmp_path, nvml):
    context = multiprocessing.get_context("fork")
    results, release = context.Queue(), context.Event()
    children = [context.Process(target=_hold_one, args=(tmp_path / "locks", results, release))
                for _ in range(6)]
    for child in children:
        child.start()
    answers = [results.get(timeout=30) for _ in children]
    release.set()
    for child in children:
        child.join(30)

    granted = sorted(value for kind, value in answers if kind == "gpu")
    rejected = [value for kind, value in answers if kind == "none"]
    assert granted == [0, 1, 2, 3]
    assert len(rejected) == 2


def test_concurrent_churn_never_shares_a_gpu(tmp_path, nvml):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_churn, args=(tmp_path / "locks", 40, results))
                for _ in range(8)]
    for child in children:
        child.start()
    intervals = [interval for _ in children for interval in results.get(timeout=60)]
    for child in children:
        child.join(30)

    assert len(intervals) > 100
    by_gpu: dict[int, list[tuple[float, float]]] = {}
    for index, start, end in intervals:
        by_gpu.setdefault(index, []).append((start, end))
    assert set(by_gpu) <= {0, 1, 2, 3}
    for index, spans in by_gpu.items():
        spans.sort()
        for (_, previous_end), (next_start, _) in zip(spans, spans[1:]):
            assert next_start >= previous_end, f"GPU {index} was held by two trials at once"


def test_lock_released_when_holder_killed(tmp_path, nvml):
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    holder = context.Process(target=_hold_all_forever, args=(tmp_path / "locks", ready))
    holder.start()
    assert ready.get(timeout=30) == [0, 1, 2, 3]
    allocator = _allocator(tmp_path, nvml)
    with pytest.raises(NoFreeGpuError):
        allocator.acquire(1)

    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)

    with allocator.acquire(4) as lease:
        assert lease.indices == [0, 1, 2, 3]


def test_one_process_cannot_take_a_gpu_twice(tmp_path, nvml):
    allocator = _allocator(tmp_path, nvml)
    first = allocator.acquire(3)
    second = allocator.acquire(1)
    assert set(first.indices).isdisjoint(second.indices)
    with pytest.raises(NoFreeGpuError):
        allocator.acquire(1)
    first.release()
    first.release()  # a second release does nothing
    assert len(allocator.acquire(3).indices) == 3


def test_sharing_fills_empty_gpus_first(tmp_path, nvml):
    allocator = _allocator(tmp_path, nvml, sharing=2)
    first_round = [allocator.acquire(1) for _ in range(4)]
    second_round = [allocator.acquire(1) for _ in range(4)]
    assert sorted(lease.indices[0] for lease in first_round) == [0, 1, 2, 3]
    assert sorted(lease.indices[0] for lease in second_round) == [0, 1, 2, 3]
    with pytest.raises(NoFreeGpuError):
        allocator.acquire(1)


def test_acquire_waits_for_a_release(tmp_path, nvml):
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    holder = context.Process(target=_hold_all_briefly, args=(tmp_path / "locks", ready))
    holder.start()
    assert ready.get(timeout=30) == [0, 1, 2, 3]
    allocator = _allocator(tmp_path, nvml)
    with pytest.raises(NoFreeGpuError):
        allocator.acquire(1)

    started = time.monotonic()
    lease = allocator.acquire(2, wait=10.0)
    holder.join(30)

    assert lease.indices == [0, 1]
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("count", [0, 5])
def test_acquire_rejects_impossible_count(tmp_path, nvml, count):
    with pytest.raises(ValueError, match="1 to 4 GPUs"):
        _allocator(tmp_path, nvml).acquire(count)


def test_allowed_limits_the_gpus(tmp_path, nvml):
    allocator = _allocator(tmp_path, nvml, allowed=[1, 3])
    assert [gpu.index for gpu in allocator.devices()] == [1, 3]
    assert allocator.acquire(2).indices == [1, 3]


def test_environment_names_gpus_in_pci_order(tmp_path, nvml):
    lease = _allocator(tmp_path, nvml).acquire(2)
    assert lease.environment() == {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_usage_summarises_samples(tmp_path, nvml):
    lease = _allocator(tmp_path, nvml).acquire(1)
    for _ in range(3):
        lease.sample()
    usage = lease.usage()["gpus"][0]
    assert usage["index"] == 0
    assert usage["uuid"] == "GPU-fake-0000"
    assert usage["name"] == "Fake GPU 80GB"
    assert usage["memory_total_mib"] == 80 * 1024
    assert usage["samples"] == 3
    assert usage["memory_used_max_mib"] == 2048
    assert usage["memory_used_last_mib"] == 2048
    assert usage["utilization_mean_pct"] == 20
    assert usage["utilization_max_pct"] == 30


def test_usage_without_samples_has_no_mean(tmp_path, nvml):
    usage = _allocator(tmp_path, nvml).acquire(1).usage()["gpus"][0]
    assert usage["samples"] == 0
    assert usage["utilization_mean_pct"] is None


def test_from_environment_reads_variables(tmp_path, nvml, monkeypatch):
    monkeypatch.setenv("OPENHPO_GPUS", "0,2")
    monkeypatch.setenv("OPENHPO_GPU_SHARING", "2")
    allocator = GpuAllocator.from_environment(tmp_path)
    assert allocator is not None
    assert [gpu.index for gpu in allocator.devices()] == [0, 2]
    assert allocator.sharing == 2
    assert allocator.lock_dir.parent == tmp_path.resolve() / "gpu-locks"


@pytest.mark.parametrize("name, value, message", [
    ("OPENHPO_GPU_SHARING", "two", "OPENHPO_GPU_SHARING"),
    ("OPENHPO_GPU_SHARING", "0", "at least 1"),
    ("OPENHPO_GPUS", "0;1", "OPENHPO_GPUS"),
])
def test_from_environment_rejects_malformed_variables(tmp_path, nvml, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        GpuAllocator.from_environment(tmp_path)


def test_without_nvml_runs_on_cpu_and_logs_once(tmp_path, nvml, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NVML_FAIL", "1")
    monkeypatch.setattr(gpus, "_cpu_logged", False)
    assert GpuAllocator.from_environment(tmp_path) is None
    assert GpuAllocator.from_environment(tmp_path) is None
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("NVML not available") == 1


def test_no_gpu_runs_on_cpu(tmp_path, nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_GPUS", "0")
    monkeypatch.setattr(gpus, "_cpu_logged", False)
    assert GpuAllocator.from_environment(tmp_path) is None
