"""How fast are the launch history's lists with a million launches on PostgreSQL?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aifred_bench python bench/history.py [--rows 1000000]

Uses the database named by DATABASE_URL (migrated here; give it a database of its own). Fills it with
COPY up to --rows launches and one attempt per launch (it only adds what is missing, so a second run
measures straight away), runs ANALYZE, then times through Django's test client the admin change list
and the API's launch list: unfiltered, every filter of the history, combinations, the search, and deep
pages; then the admin's attempt list. Prints the median time and the number of queries of each.
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
from base64 import b64encode
from pathlib import Path
from urllib.parse import urlencode

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
from launches.models import Launch, LaunchAttempt  # noqa: E402

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
        # As autovacuum would after a bulk load: statistics and the visibility map (index-only scans).
        cursor.execute(f"VACUUM ANALYZE {Launch._meta.db_table}")
    print(f"filled to {target:,} launches in {time.perf_counter() - began:.1f} s")


def fill_attempts() -> None:
    """One attempt for every launch that has none (the launches filled above have none)."""
    if LaunchAttempt.objects.exists():
        print(f"history already holds {LaunchAttempt.objects.count():,} attempts")
        return
    began = time.perf_counter()
    table = LaunchAttempt._meta.db_table
    launches = Launch._meta.db_table
    columns = "launch_id, number, requested_len, requested_auto, argv, outcome, parsed_len, exit_code, "
    columns += "message, log_tail, started_at, ended_at"
    values = "id, 1, 40960, false, '[]', outcome, 26624, 1, '', '', created_at, ended_at"
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM {launches}")  # noqa: S608
        cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"filled {LaunchAttempt.objects.count():,} attempts in {time.perf_counter() - began:.1f} s")


def viewer() -> User:
    user, _ = User.objects.get_or_create(username="bench-viewer", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="Viewers"))
    return user


def deep_cursor(depth: int) -> str:
    """The API's cursor for the page that starts ``depth`` launches down (as its next links encode it)."""
    position = Launch.objects.order_by("-created_at").values_list("created_at", flat=True)[depth]
    return b64encode(urlencode({"p": str(position)}).encode("ascii")).decode("ascii")


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
    fill_attempts()
    client = Client()
    client.force_login(viewer())
    host = Host.objects.order_by("name").first()
    model = ModelSpec.objects.order_by("source").first()
    profile = GpuProfile.objects.order_by("name").first()
    user = User.objects.get(username="user3")
    week = "2025-11-20T00:00:00+00:00"
    # (label, admin parameters, API parameters); None: the list has no such case.
    cases = [
        ("unfiltered, first page", {}, {}),
        ("page 500 (admin) / 25,000 down (API)", {"p": "500"}, {"cursor": deep_cursor(25_000)}),
        ("page 10,000 (admin) / 500,000 down (API)", {"p": "10000"}, {"cursor": deep_cursor(500_000)}),
        ("status failed", {"status__exact": "failed"}, {"status": "failed"}),
        ("kind test_yarn (none)", {"kind__exact": "test_yarn"}, {"kind": "test_yarn"}),
        ("outcome crashed", {"outcome": "crashed"}, {"outcome": "crashed"}),
        ("host", {"host__id__exact": host.pk}, {"host": host.pk}),
        ("GPU profile", {"gpu_profile__id__exact": profile.pk}, {"gpu_profile": profile.pk}),
        ("model", {"model__id__exact": model.pk}, {"model": model.pk}),
        ("who", {"requested_by__id__exact": user.pk}, {"requested_by": user.pk}),
        ("last 7 days", {"created_at__gte": week}, {"created_after": week}),
        (
            "host + status failed",
            {"host__id__exact": host.pk, "status__exact": "failed"},
            {"host": host.pk, "status": "failed"},
        ),
        (
            "model + who",
            {"model__id__exact": model.pk, "requested_by__id__exact": user.pk},
            {"model": model.pk, "requested_by": user.pk},
        ),
        ("search config name 'config-7'", {"q": "config-7"}, {"search": "config-7"}),
        ("search model 'llama'", {"q": "llama"}, {"search": "llama"}),
        ("search user 'user3'", {"q": "user3"}, {"search": "user3"}),
        ("search host 'node-05'", {"q": "node-05"}, {"search": "node-05"}),
        ("search id '777777'", {"q": "777777"}, {"search": "777777"}),
        ("search, no match", {"q": "no-such-thing"}, {"search": "no-such-thing"}),
    ]
    admin_url = reverse("admin:launches_launch_changelist")
    api_url = "/api/v1/launches/"
    print(f"\nLaunch lists, {Launch.objects.count():,} launches, median of {args.repeats} (ms, queries):")
    print(f"{'case':42} {'admin ms':>9} {'queries':>8} {'API ms':>8} {'queries':>8}")
    for label, admin_params, api_params in cases:
        admin_median, _, admin_queries = timed(client, admin_url, admin_params, args.repeats)
        api_median, _, api_queries = timed(client, api_url, api_params, args.repeats)
        print(f"{label:42} {admin_median:9.1f} {admin_queries:8d} {api_median:8.1f} {api_queries:8d}")
    attempts_url = reverse("admin:launches_launchattempt_changelist")
    print(f"\nAttempt list, {LaunchAttempt.objects.count():,} attempts:")
    for label, params in [
        ("first page", {}),
        ("outcome crashed", {"outcome": "crashed"}),
        ("page 500", {"p": "500"}),
    ]:
        median, _, queries = timed(client, attempts_url, params, args.repeats)
        print(f"{label:42} {median:9.1f} {queries:8d}")
    median, _, queries = timed(client, "/metrics", {}, args.repeats)
    print(f"\n/metrics (read from the database at scrape time): {median:.1f} ms, {queries} queries")
    began = time.perf_counter()
    response = client.get(reverse("admin:launches_launch_export"), {"host__id__exact": host.pk})
    rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
    print(f"\nCSV export of one host: {rows:,} rows in {time.perf_counter() - began:.1f} s (streamed)")


if __name__ == "__main__":
    main()
