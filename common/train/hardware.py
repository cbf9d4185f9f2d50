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


def available_memory_bytes(device: jax.Device | None = None) -> int | None:
    """Bytes a new computation may still take: an accelerator's limit less what is in
    use, or on CPU the host's available memory (``MemAvailable``; None where unknown)."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def compiled_memory_bytes(compiled) -> int | None:
    """What a compiled XLA executable (``jax.jit(f).lower(...).compile()``) holds while
    it runs: arguments, outputs and temporaries (XLA's own estimate; None if the backend
    gives none). On CPU the process needs more (the compiler, Python), so compare it to
    the free memory with a margin."""
    try:
        m = compiled.memory_analysis()
    except (NotImplementedError, AttributeError):
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def format_bytes(n: float) -> str:
    """``1536 -> "1.5 KiB"``, in the largest binary unit that keeps a number >= 1."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
