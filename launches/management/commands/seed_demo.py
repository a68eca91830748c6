"""``python manage.py seed_demo``: the demo's model and one launch config per simulated host.

The two hosts report themselves once their GPU workers run (the commands are printed at the end);
they are created here too, so that the configs can point at them before the first heartbeat.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

import launches.vllm
from gpus.models import Host, ModelSpec
from launches.models import LaunchConfig

DEMO_MODEL_DIR = Path(launches.vllm.__file__).resolve().parent / "demo_models" / "qwen3-8b-like"

# name, simulated cards, vLLM version the stand-in plays, fixed port of its config: none, since both
# hosts serve on 127.0.0.1 and each worker picks a free port of its range (a fixed one could be taken).
# Name, simulated cards, stand-in vLLM version, the config's port (None: the host picks one) and the
# host's AIFRED_PORT_RANGE. Both hosts serve on 127.0.0.1: each picks from its own range, so two
# launches at the same moment never pick the same port.
DEMO_HOSTS = (
    ("desk-3060", "NVIDIA GeForce RTX 3060:12288", "0.11.0", None, "8100-8149"),
    ("lab-h100", "NVIDIA H100 80GB HBM3:81559", "0.32.0", None, "8150-8199"),
)


def gpu_worker_env(host: str, cards: str, version: str, port_range: str) -> dict[str, str]:
    """The environment of a simulated GPU host's worker: stand-in vLLM, simulated cards, fast start,
    and the host's own ``port_range`` ("8100-8149") for launches without a fixed port."""
    return {
        "AIFRED_SIMULATED_GPUS": cards,
        "AIFRED_VLLM_COMMAND": shlex.join([sys.executable, "-m", "launches.vllm.standin", "serve"]),
        "AIFRED_STANDIN_VLLM_VERSION": version,
        "AIFRED_STANDIN_LOAD_SECONDS": "3",
        # What Qwen3-8B-AWQ's weights take; the stand-in would otherwise estimate full precision.
        "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
        "AIFRED_SERVE_HOST": "127.0.0.1",
        "AIFRED_PORT_RANGE": port_range,
        "AIFRED_STATE_DIR": str(settings.VAR_DIR / f"gpu-worker-{host}"),
    }


class Command(BaseCommand):
    help = "Create the demo model (Qwen3-8B-like) and one launch config per simulated host."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--no-worker-commands",
            action="store_true",
            help="do not print how to start the simulated hosts (make demo starts them itself)",
        )

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            model, _ = ModelSpec.objects.get_or_create(source=str(DEMO_MODEL_DIR), revision="")
            for name, _cards, _version, port, _range in DEMO_HOSTS:
                host, _ = Host.objects.get_or_create(
                    name=name, defaults={"address": "127.0.0.1", "simulated": True}
                )
                LaunchConfig.objects.get_or_create(
                    name=f"Qwen3-8B-like on {name}",
                    defaults={
                        "model": model,
                        "host": host,
                        "gpu_indices": "0",
                        "port": port,
                        "served_model_name": "qwen3-8b-like",
                        "gpu_memory_utilization": 0.9,
                    },
                )
        if model.refresh_facts():
            self.stdout.write(f"Model {model}: native context {model.native_context:,} tokens.")
        else:
            self.stderr.write(f"Could not read the demo model's config.json: {model.facts_error}")
        if options["no_worker_commands"]:
            return
        self.stdout.write("Start the simulated GPU hosts with:")
        for name, cards, version, _port, port_range in DEMO_HOSTS:
            env = " ".join(
                f"{key}={shlex.quote(value)}"
                for key, value in gpu_worker_env(name, cards, version, port_range).items()
            )
            self.stdout.write(f"  env {env} {shlex.quote(sys.executable)} manage.py gpu_worker --host {name}")
