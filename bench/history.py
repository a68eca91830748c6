"""How fast is the launch history's change list with a million launches on PostgreSQL?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aifred_bench python bench/history.py [--rows 1000000]

Uses the database named by DATABASE_URL (migrated here; give it a database of its own). Fills it with
COPY up to --rows launches (it only adds what is missing, so a second run measures straight away),
runs ANALYZE, then times the admin change list through Django's test client: unfiltered, with the
filters people use, with a search, and a deep page. Prints the median time and the number of queries
of each, and the plan of the slowest query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aifred_site.settings")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,testserver")

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from gpus.models import GpuProfile, Host, ModelSpec  # noqa: E402
from launches.models import Launch  # noqa: E402

STATUSES = ["stopped"] * 6 + ["failed", "crashed", "cancelled", "lost"]
OUTCOMES = {"stopped": "ready", "failed": "context_too_long", "crashed": "crashed", "cancelled": "cancelled"}


def fixtures() -> tuple[list[Host], list[ModelSpec], list[GpuProfile], list[User]]:
    hosts = [Host.objects.get_or_create(name=f"gpu-node-{n:02d}")[0] for n in range(8)]
    models = [
        ModelSpec.objects.get_or_create(source=source, defaults={"native_context": native})[0]
        for source, native in [
            ("Qwen/Qwen3-8B-AWQ", 40960),
            ("Qwen/Qwen3-14B-AWQ", 40960),
            ("meta-llama/Llama-3.1-8B-Instruct", 131072),
            ("mistralai/Mistral-Small-24B-Instruct-2501", 32768),
        ]
    ]
    profiles = [
        GpuProfile.objects.get_or_create(name=name, memory_total_mib=mib)[0]
        for name, mib in [("NVIDIA GeForce RTX 3060", 12288), ("NVIDIA A100-SXM4-80GB", 81920)]
    ]
    users = [User.objects.get_or_create(username=f"user{n}")[0] for n in range(12)]
    return hosts, models, profiles, users


def fill(target: int) -> None:
    have = Launch.objects.count()
    if have >= target:
        print(f"history already holds {have:,} launches")
        return
    hosts, models, profiles, users = fixtures()
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    columns = (
        "kind, config_snapshot, host_id, model_id, gpu_profile_id, requested_by_id, status, reason, outcome, "
        "spec, fingerprint, known_limit, wanted_context, context_length, server_url, task_id, last_seq, "
        "created_at, ready_at, ended_at"
    )
    began = time.perf_counter()
    batch = 200_000
    with connection.cursor() as cursor:
        for first in range(have, target, batch):
            buffer = io.StringIO()
            for number in range(first, min(first + batch, target)):
                status = STATUSES[number % len(STATUSES)]
                created = start + dt.timedelta(seconds=number * 60)
                ready = created + dt.timedelta(seconds=40 if number % 3 else 70)
                known = "\\N" if number % 3 == 0 else "26624"
                name = f"config-{number % 40}"
                buffer.write(
                    "\t".join(
                        [
                            "launch",
                            json.dumps({"name": name}),
                            str(hosts[number % len(hosts)].pk),
                            str(models[number % len(models)].pk),
                            str(profiles[number % len(profiles)].pk),
                            str(users[number % len(users)].pk),
                            status,
                            "",
                            OUTCOMES.get(status, "crashed"),
                            "{}",
                            "",
                            known,
                            "40960",
                            "26624" if status == "stopped" else "\\N",
                            "",
                            "",
                            "8",
                            created.isoformat(),
                            ready.isoformat() if status == "stopped" else "\\N",
                            (ready + dt.timedelta(hours=1)).isoformat(),
                        ]
                    )
                    + "\n"
                )
            buffer.seek(0)
            with cursor.cursor.copy(f"COPY {Launch._meta.db_table} ({columns}) FROM STDIN") as copy:
                copy.write(buffer.read())
            print(f"  {min(first + batch, target):,} launches", flush=True)
        cursor.execute(f"ANALYZE {Launch._meta.db_table}")
    print(f"filled to {target:,} launches in {time.perf_counter() - began:.1f} s")


def viewer() -> User:
    user, _ = User.objects.get_or_create(username="bench-viewer", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="Viewers"))
    return user


def timed(client: Client, url: str, params: dict, repeats: int) -> tuple[float, float, int]:
    client.get(url, params)  # warm caches, as a second visit would be
    times = []
    queries = 0
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.status_code
        queries = len(captured)
    return statistics.median(times), max(times), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database: this measures PostgreSQL's plans.")
    call_command("migrate", verbosity=0)
    fill(args.rows)
    client = Client()
    client.force_login(viewer())
    url = reverse("admin:launches_launch_changelist")
    host = Host.objects.order_by("name").first()
    model = ModelSpec.objects.order_by("source").first()
    user = User.objects.get(username="user3")
    cases = [
        ("unfiltered, first page", {}),
        ("page 500", {"p": "500"}),
        ("host", {"host__id__exact": host.pk}),
        ("host + status failed", {"host__id__exact": host.pk, "status__exact": "failed"}),
        ("model + who", {"model__id__exact": model.pk, "requested_by__id__exact": user.pk}),
        ("outcome crashed", {"outcome": "crashed"}),
        ("last 7 days", {"created_at__gte": "2025-11-20T00:00:00+00:00"}),
        ("search 'config-7'", {"q": "config-7"}),
    ]
    print(f"\nLaunch change list, {Launch.objects.count():,} launches, median of {args.repeats}:")
    print(f"{'case':32} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    for label, params in cases:
        median, worst, queries = timed(client, url, params, args.repeats)
        print(f"{label:32} {median:10.1f} {worst:8.1f} {queries:8d}")
    began = time.perf_counter()
    response = client.get(reverse("admin:launches_launch_export"), {"host__id__exact": host.pk})
    rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
    print(f"\nCSV export of one host: {rows:,} rows in {time.perf_counter() - began:.1f} s (streamed)")


if __name__ == "__main__":
    main()
