"""Submit and status latency of the REST API under concurrent clients.

Starts ``openhpo api`` (one uvicorn process) on a free port of 127.0.0.1 against a Redis, then runs C concurrent
clients (asyncio and httpx, one connection each) through three phases:

* ``submit (multipart)``: WMLA's form, the digits example's directory as a tar.gz (about 5 KB) plus the body;
* ``submit (JSON + codeHash)``: the body naming code uploaded once with ``POST /code``;
* ``status``: ``GET /hypersearch/{name}`` of a task with 20 finished experiments, the digits example's budget.

No coordinator runs, so submitted tasks stay SUBMITTED; the figures are the API's and Redis's cost, not a
search's. Every key the run creates is deleted at the end. Usage::

    python benchmarks/api.py --clients 50 --requests 10 --status-requests 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker.store import RedisStore  # noqa: E402
from hpo_core.records import TaskState, TrialState  # noqa: E402
from openhpo.local import free_port  # noqa: E402
from workers.code import pack_directory  # noqa: E402

PREFIX_PATH = "/platform/rest/deeplearning/v1"
TOKEN = "benchmark-token-0123456789"
DIGITS = REPO / "examples" / "digits"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summarize(label: str, latencies: list[float], elapsed: float, errors: list[str]) -> dict:
    for error in errors[:5]:
        print(f"{label}: {error}", file=sys.stderr)
    return {"phase": label, "requests": len(latencies), "errors": len(errors),
            "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000, "max_ms": max(latencies) * 1000,
            "throughput_rps": len(latencies) / elapsed}


async def run_phase(label: str, url: str, clients: int, per_client: int, make_request) -> dict:
    """Run ``per_client`` requests on each of ``clients`` connections at once; ``make_request(client, i)``."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                                     limits=httpx.Limits(max_connections=1)) as client:
            await client.get("/health")  # opens the connection, so that the timed requests measure steady state
            await barrier.wait()
            for i in range(per_client):
                started = time.perf_counter()
                response = await make_request(client, index * per_client + i)
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 400:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    barrier = asyncio.Barrier(clients)
    started = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    return summarize(label, latencies, time.perf_counter() - started, errors)


def seed_status_task(store: RedisStore, body: dict) -> str:
    """Create a task with 20 finished trials, the size of the digits example's searches."""
    name = "benchmark-status"
    store.create_task(name, dict(body, hpoName=name), "benchmark", None)
    store.set_task_state(name, [TaskState.SUBMITTED], TaskState.RUNNING)
    configs = [({"learning_rate": 10 ** (-1 - i / 10), "hidden": 32 * (1 + i % 8), "dropout": 0.1,
                 "optimizer": "adam", "batch_size": 32}, {}) for i in range(20)]
    for trial_id in store.create_trials(name, configs):
        claim = store.claim(name, trial_id, 1, "bench-worker", 60.0, f"/tmp/{name}/{trial_id}")
        assert getattr(claim, "status", claim) == "ok", claim
        store.finish(name, trial_id, 1, TrialState.FINISHED, metric=0.9 + trial_id / 1000,
                     steps=[{"steps": s, "accuracy": 0.9} for s in range(1, 16)])
    return name


async def benchmark(url: str, store: RedisStore, clients: int, per_client: int, status_per_client: int) -> list[dict]:
    body = json.loads((DIGITS / "random.json").read_text())
    archive = pack_directory(DIGITS)
    results = []

    async def submit_multipart(client: httpx.AsyncClient, i: int) -> httpx.Response:
        files = {"file": ("digits.modelDir.tar", archive, "application/octet-stream")}
        return await client.post(f"{PREFIX_PATH}/hypersearch", data={"data": json.dumps(body)}, files=files)

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        upload = await client.post(f"{PREFIX_PATH}/code", files={"file": ("digits.tar.gz", archive)})
        upload.raise_for_status()
        code_hash = upload.json()["codeHash"]

    async def submit_json(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(f"{PREFIX_PATH}/hypersearch", json=dict(body, codeHash=code_hash))

    status_name = seed_status_task(store, body)

    async def get_status(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.get(f"{PREFIX_PATH}/hypersearch/{status_name}")

    for label, request, count in (("submit (multipart)", submit_multipart, per_client),
                                  ("submit (JSON + codeHash)", submit_json, per_client),
                                  ("status (20 experiments)", get_status, status_per_client)):
        await run_phase(label, url, min(clients, 4), 2, request)  # warm-up, not counted
        results.append(await run_phase(label, url, 1, count, request) | {"clients": 1})
        results.append(await run_phase(label, url, clients, count, request) | {"clients": clients})
    return results


def start_api(redis_url: str, prefix: str, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, OPENHPO_REDIS_URL=redis_url, OPENHPO_KEY_PREFIX=prefix, OPENHPO_API_TOKEN=TOKEN,
               OPENHPO_LOG_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-m", "openhpo.cli", "api", "--port", str(port), "--no-access-log"],
                               env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API server did not start; see {log_path}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("OPENHPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11"),
                        help="Redis to use; the run writes under a key prefix of its own and deletes it")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default: 50)")
    parser.add_argument("--requests", type=int, default=10, help="submits per client in each submit phase "
                        "(default: 10)")
    parser.add_argument("--status-requests", type=int, default=20, help="status requests per client (default: 20)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    prefix = f"openhpo-bench-{uuid.uuid4().hex[:8]}"
    connection = redis.Redis.from_url(args.redis_url)
    store = RedisStore(connection, prefix)
    log_path = Path(f"/tmp/{prefix}-api.log")
    port = free_port()
    process = start_api(args.redis_url, prefix, port, log_path)
    try:
        results = asyncio.run(benchmark(f"http://127.0.0.1:{port}", store, args.clients, args.requests,
                                        args.status_requests))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        keys = list(connection.scan_iter(f"{prefix}*", count=1000))
        if keys:
            connection.delete(*keys)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.platform()}")
    print("| phase | clients | requests | errors | p50 (ms) | p99 (ms) | max (ms) | throughput (req/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['phase']} | {row['clients']} | {row['requests']} | {row['errors']} | {row['p50_ms']:.1f} | "
              f"{row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['throughput_rps']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
