"""A fleet under load: N simulated hosts, M launches, optionally a Redis restart in the middle.

    python bench/fleet.py [--hosts 32] [--launches 1000] [--chaos] [--load 0.3]

Each host is a real GPU worker process (one simulated H100, the vLLM stand-in); one control worker
applies their events to a database of its own (a fresh SQLite file, or DATABASE_URL); a private
redis-server without persistence is the broker. Launches are spread over the hosts; on each host one
launch at a time is requested, waited for until "running" in the database, and stopped. With
--chaos Redis is stopped for 5 s (losing what it held) once half the launches were requested.

Prints, per launch, the time from the request to "running" in the database minus the stand-in's own
start time (its process start to its ready line, as the worker reported them): p50/p95/p99; the
launches lost or stuck past the bound; the most servers ever seen at once on one GPU (sampled from
the processes' marks); the control worker's event throughput. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launches.gpu.host import LAUNCH_MARK  # noqa: E402
from launches.vllm.process import kill_group  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.redis_server import PrivateRedis, RedisServerMissing  # noqa: E402

H100 = "NVIDIA H100 80GB HBM3:81559"
MODEL = ROOT / "launches" / "vllm" / "demo_models" / "qwen3-8b-like"
BOUND_SECONDS = 120


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
    kill_group(process.pid, grace=1)


def servers_per_host(run: str) -> dict[str, int]:
    """Live servers per host of this run, from the marks in their environments (one scan of /proc)."""
    prefix = f"{LAUNCH_MARK}=".encode()
    launches: dict[str, set[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix) and run.encode() in item:
                host, _, launch = item[len(prefix) :].decode().partition("@")
                launches.setdefault(host, set()).add(launch.rsplit(":", 1)[-1])
    return {host: len(ids) for host, ids in launches.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--launches", type=int, default=1000)
    parser.add_argument("--chaos", action="store_true", help="stop Redis for 5 s half-way")
    parser.add_argument("--load", type=float, default=0.3, help="the stand-in's load time in seconds")
    parser.add_argument("--heartbeat", type=int, default=2, help="seconds between a worker's heartbeats")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aifred-fleet-"))
    run = f"r{os.getpid()}"
    redis = PrivateRedis(work)
    try:
        redis.start()
    except RedisServerMissing as exc:
        sys.exit(f"bench/fleet.py needs {exc}.")
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIFRED_", "DJANGO_", "CELERY_"))},
        "REDIS_URL": redis.url,
        "AIFRED_CONTROL_QUEUE": f"control-{run}",
        "PYTHONPATH": str(ROOT),
        "AIFRED_LAUNCH_QUEUED_SECONDS": str(BOUND_SECONDS),
        "AIFRED_LAUNCH_STOPPING_SECONDS": str(BOUND_SECONDS),
        "AIFRED_LAUNCH_LOST_SECONDS": str(BOUND_SECONDS),
        "AIFRED_VISIBILITY_TIMEOUT": "30",
    }
    base.setdefault("DATABASE_URL", f"sqlite:///{work / 'fleet.sqlite3'}")
    os.environ.update({k: v for k, v in base.items() if k not in {"PYTHONPATH"}})
    os.environ["DJANGO_SETTINGS_MODULE"] = "aifred_site.settings"
    os.environ["AIFRED_VAR_DIR"] = str(work / "var")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import close_old_connections

    from aifred_site.celery import app
    from gpus.models import Gpu, ModelSpec
    from launches.models import Launch, LaunchConfig, LaunchEvent, LaunchRefused

    app.conf.broker_url = redis.url
    call_command("migrate", "--noinput", verbosity=0)

    processes: list[subprocess.Popen] = []
    control_env = {
        **base,
        "DJANGO_SETTINGS_MODULE": "aifred_site.settings",
        "AIFRED_VAR_DIR": str(work / "var"),
    }
    processes.append(
        start(
            [sys.executable, "manage.py", "control_worker", "--concurrency=2", f"--schedule={work / 'beat'}"],
            control_env,
            work / "control.log",
        )
    )
    hosts = [f"bench-{run}-{number}" for number in range(args.hosts)]
    for host in hosts:
        env = {
            **base,
            "AIFRED_SIMULATED_GPUS": H100,
            "AIFRED_VLLM_COMMAND": f"{sys.executable} -m launches.vllm.standin serve",
            "AIFRED_STANDIN_VLLM_VERSION": "0.32.0",
            "AIFRED_STANDIN_LOAD_SECONDS": str(args.load),
            "AIFRED_STANDIN_TEARDOWN_SECONDS": "0.2",
            "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
            "AIFRED_HEARTBEAT_SECONDS": str(args.heartbeat),
            "AIFRED_STATE_DIR": str(work / f"state-{host}"),
            "AIFRED_SERVE_HOST": "127.0.0.1",
        }
        processes.append(
            start([sys.executable, "-m", "launches.gpu", "--host", host], env, work / f"{host}.log")
        )

    try:
        deadline = time.monotonic() + 180
        while Gpu.objects.current().filter(host__name__in=hosts).count() < len(hosts):
            if time.monotonic() > deadline:
                sys.exit(f"not every host reported within 180 s; see {work}")
            time.sleep(0.5)
        model, _ = ModelSpec.objects.get_or_create(source=str(MODEL), revision="")
        model.refresh_facts()
        configs = {}
        for host in hosts:
            configs[host] = LaunchConfig.objects.create(
                name=f"fleet {host}",
                model=model,
                host=Gpu.objects.current().get(host__name=host).host,
                port=free_port(),
                quantization="awq",
            )

        overheads: list[float] = []
        outcomes: dict[str, int] = {}
        stuck: list[int] = []
        requested = [0]
        lock = threading.Lock()
        max_per_gpu = [0]
        sampling = threading.Event()
        chaos_at = args.launches // 2 if args.chaos else None
        chaos_done = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.5):
                counts = servers_per_host(run)
                if counts:
                    max_per_gpu[0] = max(max_per_gpu[0], *counts.values())

        def wait_for(launch: Launch, statuses: set[str]) -> bool:
            limit = time.monotonic() + BOUND_SECONDS
            while time.monotonic() < limit:
                launch.refresh_from_db(fields=["status"])
                if launch.status in statuses or launch.is_terminal:
                    return True
                time.sleep(0.1)
            return False

        def drive(host: str) -> None:
            while True:
                with lock:
                    if requested[0] >= args.launches:
                        return
                    requested[0] += 1
                    number = requested[0]
                if chaos_at is not None and number == chaos_at:
                    threading.Thread(target=outage, daemon=True).start()
                asked = time.time()
                try:
                    launch = Launch.objects.start(configs[host], user=None)
                except LaunchRefused as exc:
                    with lock:
                        outcomes["refused"] = outcomes.get("refused", 0) + 1
                    print(f"refused: {exc}", file=sys.stderr)
                    time.sleep(1)
                    continue
                if not wait_for(launch, {Launch.Status.READY}):
                    stuck.append(launch.pk)
                    continue
                seen = time.time()
                launch.refresh_from_db()
                attempt = launch.attempts.order_by("number").last()
                if (
                    launch.status == Launch.Status.READY
                    and attempt
                    and attempt.started_at
                    and launch.ready_at
                ):
                    own = (launch.ready_at - attempt.started_at).total_seconds()
                    with lock:
                        overheads.append(seen - asked - own)
                with contextlib.suppress(LaunchRefused):
                    launch.request_stop()
                if not wait_for(launch, set(Launch.Status.terminal())):
                    stuck.append(launch.pk)
                launch.refresh_from_db(fields=["status"])
                with lock:
                    outcomes[launch.status] = outcomes.get(launch.status, 0) + 1
                close_old_connections()

        def outage() -> None:
            print("chaos: stopping Redis for 5 s", file=sys.stderr)
            redis.stop()
            time.sleep(5)
            redis.start()
            chaos_done.set()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        drivers = [threading.Thread(target=drive, args=(host,), daemon=True) for host in hosts]
        for thread in drivers:
            thread.start()
        for thread in drivers:
            thread.join()
        elapsed = time.monotonic() - began
        sampling.set()
        ours = Launch.objects.filter(host__name__in=hosts)
        events = LaunchEvent.objects.filter(launch__in=ours).count()
        lost = ours.filter(status=Launch.Status.LOST).count()
        not_ended = ours.exclude(status__in=Launch.Status.terminal()).count()

        def percentile(values: list[float], share: float) -> float:
            if not values:
                return float("nan")
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

        print(f"hosts {args.hosts}, launches {args.launches}{' with a Redis restart' if args.chaos else ''}")
        print(f"elapsed {elapsed:.1f} s; end states {outcomes}")
        print(
            f"overhead (request → running in the database, minus the stand-in's start): "
            f"p50 {percentile(overheads, 0.5):.3f} s, p95 {percentile(overheads, 0.95):.3f} s, "
            f"p99 {percentile(overheads, 0.99):.3f} s, mean {statistics.fmean(overheads or [0]):.3f} s"
        )
        print(
            f"lost {lost}; stuck past {BOUND_SECONDS} s {len(stuck) + not_ended}; "
            f"most servers on one GPU {max_per_gpu[0]}"
        )
        print(f"control worker: {events} events applied, {events / elapsed:.1f} events/s")
        print(
            json.dumps(
                {
                    "hosts": args.hosts,
                    "launches": args.launches,
                    "chaos": args.chaos,
                    "p50_overhead_s": round(percentile(overheads, 0.5), 3),
                    "p95_overhead_s": round(percentile(overheads, 0.95), 3),
                    "p99_overhead_s": round(percentile(overheads, 0.99), 3),
                    "lost": lost,
                    "stuck": len(stuck) + not_ended,
                    "max_per_gpu": max_per_gpu[0],
                    "events_per_s": round(events / elapsed, 1),
                }
            )
        )
        return 0
    finally:
        for process in reversed(processes):
            stop(process)
        for host in hosts:
            from launches.gpu.adopter import kill_marked_groups

            kill_marked_groups(host, grace=1)
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
