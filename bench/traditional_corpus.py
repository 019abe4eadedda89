"""Write the evaluation corpus in Traditional Chinese script, to measure Simplified questions over it.

Taiwan and Hong Kong documents are written in Traditional characters while most questions kbqa gets
are Simplified (and the other way round); this copy (OpenCC ``s2t``) isolates that mismatch. Ingest
it and run the evaluation sets over it as they are (``rag.evaluation`` matches evidence in either
script)::

    .venv/bin/python -m bench.traditional_corpus /tmp/evaltrad-corpus
    .venv/bin/python ingest/run.py /tmp/evaltrad-corpus --kb evaltrad
    .venv/bin/python -m bench.retrieval_sets dev heldout --kb evaltrad
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import opencc

from rag.config import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "bench" / "eval" / "corpus"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    to_traditional = opencc.OpenCC("s2t")
    shutil.rmtree(args.out, ignore_errors=True)
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file():
            target = args.out / path.relative_to(CORPUS)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(to_traditional.convert(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {sum(1 for p in args.out.rglob('*') if p.is_file())} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
