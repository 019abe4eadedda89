"""Command line: ``python ingest/run.py DIR [--kb NAME] [--data-dir PATH] [--config YAML] [--full] [--json]``.

Exit codes: 0 when the knowledge base now mirrors the folder (even if some files failed), 1 when
nothing at all could be ingested (an empty folder never empties a knowledge base: it is refused), 2
for a usage error such as a missing folder, 3 when another ingestion is writing the same knowledge
base (nothing was changed; run again when it has finished).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.pipeline import IngestSummary
    from rag.config import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ingest/run.py", description="Ingest a folder into a knowledge base."
    )
    parser.add_argument("folder", type=Path, help="folder of documents (searched recursively)")
    parser.add_argument("--kb", help="knowledge base name (default: the configured default_kb)")
    parser.add_argument("--data-dir", type=Path, help="where kbqa keeps its state (KBQA_DATA_DIR)")
    parser.add_argument("--config", type=Path, help="YAML settings file (KBQA_CONFIG)")
    parser.add_argument("--full", action="store_true", help="re-read and re-embed every file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def batch_job_settings(settings: Settings) -> Settings:
    """The CLI is a batch job with the machine to itself: its embedder may use every core (the app
    keeps ``torch_threads``, 1, so a question's embedding never waits on its own threads)."""
    return settings.model_copy(update={"torch_threads": settings.ingest_torch_threads})


def format_summary(summary: IngestSummary, folder: Path) -> str:
    lines = [
        f"knowledge base '{summary.kb}' <- {folder}",
        f"  files: {len(summary.added)} added, {len(summary.updated)} updated, "
        f"{len(summary.unchanged)} unchanged, {len(summary.deleted)} deleted, "
        f"{len(summary.failed)} failed, {len(summary.skipped)} skipped"
        + (f", {len(summary.reread)} uploaded read again" if summary.reread else ""),
        f"  chunks: {summary.chunks_written} written, {summary.chunks_deleted} deleted",
        f"  time: {summary.seconds:.1f} s",
    ]
    for title, items in (("failed", summary.failed), ("skipped", summary.skipped)):
        if items:
            lines.append(f"  {title}:")
            lines.extend(f"    {source}: {reason}" for source, reason in items)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.folder.is_dir():
        what = "is not a folder" if args.folder.exists() else "does not exist"
        print(f"error: {args.folder} {what}", file=sys.stderr)
        return 2

    from ingest.pipeline import EmptyFolderError, Ingestor
    from rag.config import load_settings
    from rag.embeddings import EmbeddingModelError, load_embeddings
    from rag.locking import IngestionLock, KnowledgeBaseBusyError
    from rag.store import StoreError, validate_kb_name

    try:
        settings = batch_job_settings(load_settings(data_dir=args.data_dir, config=args.config))
        kb = validate_kb_name(settings.default_kb if args.kb is None else args.kb)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        IngestionLock(settings.data_dir, kb).ensure_free()  # before spending seconds on loading the model
        ingestor = Ingestor(settings, load_embeddings(settings))
        summary = ingestor.ingest_folder(args.folder, kb, full=args.full, progress=not args.quiet)
    except KnowledgeBaseBusyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        # Safe to stop anywhere: files of the unfinished batch stay pending and are redone next time.
        print("\ninterrupted: run the same command again to finish (nothing is duplicated)", file=sys.stderr)
        return 130
    except (EmbeddingModelError, StoreError, EmptyFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(summary.as_dict(), ensure_ascii=False)
        if args.json
        else format_summary(summary, args.folder)
    )
    if not summary.ingested_any:
        print("error: nothing could be ingested", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
