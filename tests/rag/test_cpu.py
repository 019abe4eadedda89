import os

from rag.cpu import cpu_dtype, cpu_flags, usable_cores


def test_cpu_dtype_is_bfloat16_only_where_the_cpu_computes_it() -> None:
    assert cpu_dtype({"avx2", "fma"}) == "float32"
    assert cpu_dtype({"avx2", "avx512f", "avx512_bf16"}) == "bfloat16"
    assert cpu_dtype({"amx_bf16", "amx_tile"}) == "bfloat16"
    assert cpu_dtype({"asimd", "bf16"}) == "bfloat16"  # ARM
    assert cpu_dtype(set()) == "float32"


def test_cpu_flags_reads_this_machines_cpu() -> None:
    flags = cpu_flags()
    assert isinstance(flags, set)
    assert not flags or all(flag == flag.strip() and flag for flag in flags)


def test_usable_cores_counts_this_process_cores() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
