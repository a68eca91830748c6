"""Reading the GPU inventory: a recorded NVML answer, the real no-driver path, simulated cards."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

from gpus.nvml import (
    GpuInfo,
    NvmlError,
    SimulatedGpus,
    read_inventory,
    read_inventory_or_empty,
    simulated_uuid,
)

FIXTURE = Path(__file__).parent / "data" / "nvml-inventory-2x.json"


class RecordedNvml:
    """Replays a recorded inventory through the same functions pynvml offers (no GPU on test hosts)."""

    NVMLError = pynvml.NVMLError

    def __init__(self, recorded: dict) -> None:
        self.recorded = recorded
        self.shut_down = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.recorded["nvmlSystemGetDriverVersion"]

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.recorded["nvmlSystemGetCudaDriverVersion"]

    def nvmlDeviceGetCount(self) -> int:
        return len(self.recorded["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.recorded["devices"][index]

    def nvmlDeviceGetName(self, handle: dict) -> bytes:
        return handle["nvmlDeviceGetName"].encode()  # older bindings answer bytes

    def nvmlDeviceGetUUID(self, handle: dict) -> str:
        return handle["nvmlDeviceGetUUID"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(**handle["nvmlDeviceGetMemoryInfo"])

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict) -> tuple[int, int]:
        return tuple(handle["nvmlDeviceGetCudaComputeCapability"])


def test_a_recorded_nvml_inventory_becomes_cards_with_memory_in_mib() -> None:
    nvml = RecordedNvml(json.loads(FIXTURE.read_text()))
    inventory = read_inventory(nvml)
    assert inventory.driver_version == "550.54.15" and inventory.cuda_driver_version == "12.4"
    assert inventory.gpus[0] == GpuInfo(
        index=0,
        name="NVIDIA GeForce RTX 3060",
        uuid="GPU-5c3b2a1e-7d7f-4b0e-9a55-2f1d3c4b5a69",
        memory_total_mib=12288,
        memory_free_mib=12035,
        compute_capability="8.6",
    )
    assert inventory.gpus[1].memory_total_mib == 81559 and inventory.gpus[1].compute_capability == "9.0"
    assert not inventory.simulated and inventory.status == ""
    assert nvml.shut_down


def test_without_an_nvidia_driver_nvml_fails_with_one_error_and_the_host_reports_no_gpus() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    with pytest.raises(NvmlError, match="NVIDIA driver"):
        read_inventory()
    inventory = read_inventory_or_empty()
    assert inventory.gpus == () and "reports no GPUs" in inventory.status


def test_simulated_cards_have_stable_uuids_and_show_used_memory() -> None:
    cards = SimulatedGpus("desk-3060", "NVIDIA GeForce RTX 3060:12288, NVIDIA H100 80GB HBM3:81559")
    inventory = cards.inventory({0: 11059})
    assert [gpu.name for gpu in inventory.gpus] == ["NVIDIA GeForce RTX 3060", "NVIDIA H100 80GB HBM3"]
    assert inventory.gpus[0].uuid == simulated_uuid("desk-3060", 0) == cards.inventory().gpus[0].uuid
    assert inventory.gpus[0].uuid != simulated_uuid("lab-h100", 0)
    assert (inventory.gpus[0].memory_free_mib, inventory.gpus[1].memory_free_mib) == (1229, 81559)
    assert inventory.simulated


@pytest.mark.parametrize("spec", ["", "RTX 3060", "RTX 3060:lots", ":12288", "RTX 3060:0"])
def test_a_wrong_simulated_inventory_is_refused_in_plain_words(spec: str) -> None:
    with pytest.raises(NvmlError):
        SimulatedGpus("desk", spec)
