"""The GPU inventory of this host, read with NVML (nvidia-ml-py's ``pynvml``), or simulated.

Plain Python, no Django: the GPU worker reads it and sends it to the control side in its heartbeat.
A host without an NVIDIA driver is not an error for the worker: ``read_inventory`` then returns an
empty inventory whose ``status`` says why, so the site can show it.

A simulated inventory (``AIFRED_SIMULATED_GPUS="NVIDIA GeForce RTX 3060:12288,NVIDIA H100 80GB
HBM3:81559"``) replaces NVML for tests and the demo; its UUIDs are derived from the host name and
the index, so they stay the same across restarts and the site does not see a GPU change.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

MIB = 1024 * 1024


class NvmlError(Exception):
    """NVML cannot be used here (no driver, no library, no permission) or a simulated spec is wrong."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_mib: int
    memory_free_mib: int
    compute_capability: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[GpuInfo, ...] = ()
    driver_version: str = ""
    simulated: bool = False
    # Empty when NVML answered; otherwise the reason in plain words (no driver, library missing, ...).
    status: str = ""
    cuda_driver_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [gpu.to_dict() for gpu in self.gpus]
        return data

    def by_index(self, index: int) -> GpuInfo | None:
        return next((gpu for gpu in self.gpus if gpu.index == index), None)


@dataclass
class SimulatedGpus:
    """Cards described by ``name:MiB`` pairs; free memory is what no simulated server holds."""

    host: str
    spec: str
    cards: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cards = parse_simulated_spec(self.spec)

    def inventory(self, used_mib: dict[int, int] | None = None) -> Inventory:
        used_mib = used_mib or {}
        gpus = tuple(
            GpuInfo(
                index=index,
                name=name,
                uuid=simulated_uuid(self.host, index),
                memory_total_mib=total,
                memory_free_mib=max(total - used_mib.get(index, 0), 0),
                compute_capability="8.6" if "3060" in name else "9.0",
            )
            for index, (name, total) in enumerate(self.cards)
        )
        return Inventory(gpus=gpus, driver_version="simulated", simulated=True)


def parse_simulated_spec(spec: str) -> list[tuple[str, int]]:
    """``"NVIDIA GeForce RTX 3060:12288,NVIDIA H100 80GB HBM3:81559"`` -> [(name, MiB), ...]."""
    cards: list[tuple[str, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, mib = part.rpartition(":")
        if not sep or not name.strip() or not mib.strip().isdigit() or int(mib) <= 0:
            raise NvmlError(
                f"Simulated GPU {part!r} is not 'name:MiB' (e.g. 'NVIDIA GeForce RTX 3060:12288')."
            )
        cards.append((name.strip(), int(mib)))
    if not cards:
        raise NvmlError("AIFRED_SIMULATED_GPUS lists no GPU; give at least one 'name:MiB'.")
    return cards


def simulated_uuid(host: str, index: int) -> str:
    digest = hashlib.sha256(f"aifred-simulated:{host}:{index}".encode()).digest()[:16]
    return f"GPU-{uuid.UUID(bytes=digest)}"


def _text(value: Any) -> str:
    # nvidia-ml-py returns str since 11.x; older bindings returned bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


def _load_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise NvmlError("nvidia-ml-py is not installed; install the project's requirements.") from exc
    return pynvml


def read_inventory(nvml: Any = None) -> Inventory:
    """Ask NVML for every card; raise NvmlError when NVML cannot be used on this host.

    ``nvml`` is the ``pynvml`` module (the default) or an object with the same functions, which is how
    a recorded inventory is replayed in tests on hosts without a GPU.
    """
    nvml = nvml or _load_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlError(_explain(nvml, exc)) from exc
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda = nvml.nvmlSystemGetCudaDriverVersion()
            cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except nvml.NVMLError:
            cuda_text = ""
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    memory_total_mib=int(memory.total) // MIB,
                    memory_free_mib=int(memory.free) // MIB,
                    compute_capability=f"{major}.{minor}",
                )
            )
        return Inventory(gpus=tuple(gpus), driver_version=driver, cuda_driver_version=cuda_text)
    except nvml.NVMLError as exc:
        raise NvmlError(f"NVML failed while reading the GPUs: {exc}") from exc
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _explain(nvml: Any, exc: Exception) -> str:
    library_missing = getattr(nvml, "NVMLError_LibraryNotFound", None)
    driver_missing = getattr(nvml, "NVMLError_DriverNotLoaded", None)
    if library_missing and isinstance(exc, library_missing):
        return "No NVIDIA driver found (the NVML library is missing); this host reports no GPUs."
    if driver_missing and isinstance(exc, driver_missing):
        return "The NVIDIA driver is not loaded; this host reports no GPUs."
    return f"NVML could not be initialised ({exc}); this host reports no GPUs."


def read_inventory_or_empty(nvml: Any = None) -> Inventory:
    """The inventory, or an empty one whose status says why NVML could not be read."""
    try:
        return read_inventory(nvml)
    except NvmlError as exc:
        return Inventory(status=str(exc))
