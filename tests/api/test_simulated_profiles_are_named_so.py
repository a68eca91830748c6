"""A GPU profile has one name, with its memory and its simulated mark, in every output: admin, pages,
CSV, API, /metrics and the YaRN test's verdict."""

from __future__ import annotations

import csv
import io

from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from gpus.models import Gpu, GpuProfile
from tests.api.conftest import token_client
from tests.factories import learn_limit, make_launch, make_profile

SIMULATED = "NVIDIA GeForce RTX 3060 (12 GiB) · simulated"


def simulated_profile(config) -> GpuProfile:
    profile = make_profile("NVIDIA GeForce RTX 3060", 12288, simulated=True)
    Gpu.objects.filter(host=config.host).update(profile=profile)
    return profile


def test_csv_api_and_metrics_name_a_simulated_profile_as_simulated(client, viewer, config) -> None:
    profile = simulated_profile(config)
    launch = make_launch(config, viewer, status="ready")
    assert launch.gpu_profile == profile
    learn_limit(config, profile, 27168)

    client.force_login(viewer)
    response = client.get(reverse("admin:launches_launch_export"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["gpu_profile"] for row in rows] == [SIMULATED]

    api = token_client(viewer)
    assert api.get(f"/api/v1/launches/{launch.pk}/").json()["gpu_profile_name"] == SIMULATED
    profiles = api.get("/api/v1/gpu-profiles/").json()["results"]
    assert sorted((item["display_name"], item["simulated"]) for item in profiles) == [
        ("NVIDIA GeForce RTX 3060 (12 GiB)", False),
        (SIMULATED, True),
    ]

    metrics = client.get("/metrics", HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"])
    named = {
        (sample.name, sample.labels["profile"])
        for family in text_string_to_metric_families(metrics.content.decode())
        for sample in family.samples
        if "profile" in sample.labels
    }
    assert named == {("aifred_gpus", SIMULATED), ("aifred_learned_limit_tokens", SIMULATED)}

    assert str(profile) == SIMULATED
    assert launch.yarn_test_verdict(27168).startswith(f"YaRN ×1.0 on {SIMULATED}: ")
    # The fleet names it once per card row and once per learned limit, the same way.
    fleet = client.get(reverse("launches:fleet")).content.decode()
    assert fleet.count(f"<td>{SIMULATED}</td>") == 2
