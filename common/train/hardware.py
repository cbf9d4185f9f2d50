"""What the accelerator offers: its peak FLOP/s (for MFU) and the memory a run used.

Production code (the run logger's MFU) and the benchmarks (``common.bench``) share these.
"""

from __future__ import annotations

import resource

import jax

# Dense bf16 peak FLOP/s per device (vendor figures, no sparsity). MFU is reported
# only for devices listed here.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def peak_flops(device: jax.Device | None = None) -> float | None:
    """Peak bf16 FLOP/s of ``device`` (default: the first device), None if unknown."""
    kind = (device or jax.devices()[0]).device_kind
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return flops
    return None


def peak_memory_bytes(device: jax.Device | None = None) -> int | None:
    """Peak bytes in use on an accelerator, or the process's max RSS on CPU."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0)))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
