"""What this CPU computes natively, for the choices that depend on it (the embedder's and vLLM's dtype).

Machines of the same kind differ from one session to the next (an AVX2-only EPYC, then one with
AVX-512 and AVX512-BF16), so such choices are made at start-up from the CPU's own flags.
"""

from __future__ import annotations

import os
from pathlib import Path

# x86 AVX512-BF16 or AMX, ARM's bf16 extension: bfloat16 products in hardware.
_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``) from /proc/cpuinfo; empty elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_dtype(flags: set[str]) -> str:
    """bfloat16 where the CPU has bfloat16 arithmetic, float32 where it would be emulated.

    Emulated, bfloat16 is the slower one: on an AVX2-only EPYC the packaged 0.5B LLM read a 589-token
    prompt in 25 s in bfloat16 against 4.4 s in float32 (it generated 8 tokens/s against 4, but a RAG
    prompt is long and its answer short). Native, it is the faster one: on an EPYC with AVX512-BF16,
    m3e-small embedded 2.7x faster in bfloat16 (docs/BENCHMARKS.md).
    """
    return "bfloat16" if flags & _BFLOAT16_FLAGS else "float32"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container narrows), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no affinity call on this platform
        return os.cpu_count() or 1
