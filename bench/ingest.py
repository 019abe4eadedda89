"""Ingestion throughput: kbqa against the naive LangChain pipeline, re-ingest, and memory at scale.

A corpus is generated once (deterministic, cached under ``--data-dir``): ``--files`` documents of
``--mb`` megabytes in all, sizes spread log-normally, about 60 % Chinese and 40 % English by file,
Markdown with headings and plain text, ``--pdf-share`` of them PDFs, and ``--copy-share`` of them
exact copies of another file in a second folder (shared drives hold such copies; the naive pipeline
embeds them twice, kbqa once). Each run is a fresh process (``--worker``), so model loading, peak RSS
and caches are per run; kbqa and naive runs alternate for ``--rounds`` rounds.

* **kbqa**: ``Ingestor.ingest_folder`` with the settings of ``KBQA_*``/``--set`` (default: the
  packaged m3e-small, chunks 500/80 with headings), into a fresh data directory;
* **naive**: the LangChain tutorial — each file read by kbqa's own loaders (so parsing is equal), then
  ``RecursiveCharacterTextSplitter(1000, 200)`` + ``HuggingFaceEmbeddings`` (the same model files) +
  ``Chroma.from_documents`` into a fresh persisted directory.

Reported per run: pipeline seconds (after the model is loaded: both load the same model), files/s,
chunks/s, peak RSS, and kbqa's ratio to naive. Then, on the last kbqa round's data: a re-run with
nothing changed, and a re-run after ``--change-share`` of the files were edited (a sentence appended).

``--memory 25000 50000 100000`` instead ingests corpora of about that many chunks with kbqa and a
deterministic hash embedder (embedding cost is not what grows with corpus size; holding chunks or
vectors would be), and prints peak RSS for each: flat is the target. Usage (from the project root)::

    .venv/bin/python -m bench.ingest [--files 2000] [--mb 20] [--rounds 2] [--set KEY=VALUE ...]
    .venv/bin/python -m bench.ingest --memory 25000 50000 100000

Say the machine and its load when quoting the numbers (printed with every table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: tests.support (the PDF writer) lives at the root
    sys.path.insert(0, str(ROOT))

from bench.load import child_env, machine  # noqa: E402

KB = "bench"
SEED = 20261128
NAIVE_CHUNK, NAIVE_OVERLAP = 1000, 200
MEMORY_CHUNK = 100  # small chunks so 100k of them need ~10 MB of text, not 50

ZH_WORDS = """
知识库 问答 系统 文档 检索 向量 模型 员工 公司 部门 报销 流程 审批 合同 采购 预算 项目 会议 培训 考核
服务器 网络 安全 权限 数据 备份 客户 订单 发票 仓库 物流 质量 测试 发布 版本 需求 设计 开发 运维 监控
告警 年假 病假 加班 工资 社保 公积金 办公室 门禁 打印机 班车 食堂 规定 标准 要求 负责 提交 确认 完成 处理
通知 记录 每月 每周 季度 年度 之前 之后 以上 以下 必须 可以 应当 不得 按照 根据 如果 需要 通过 进行
相关 主要 重要
""".split()  # noqa: SIM905 - word lists read better as text
ZH_PUNCT = "，，，、；"
EN_WORDS = """knowledge base question answer system document retrieval vector model employee company
department expense process approval contract purchase budget project meeting training review server network
security access data backup customer order invoice warehouse shipping quality test release version design
develop operate monitor alert leave overtime salary office badge printer shuttle canteen policy standard
must should may within before after every month week quarter year submit confirm complete handle notify
record team manager the a of to and in for on with by from is are be this that each all any""".split()  # noqa: SIM905


@dataclass(frozen=True)
class RunResult:
    """One worker run, as its process measured it."""

    pipeline: str
    files: int
    chunks: int
    load_s: float
    ingest_s: float
    peak_rss_mb: float
    detail: dict[str, Any]

    @property
    def files_per_s(self) -> float:
        return self.files / self.ingest_s if self.ingest_s else math.inf

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.ingest_s if self.ingest_s else math.inf


# --- corpus ------------------------------------------------------------------------------------


def _zh_sentence(rng: random.Random) -> str:
    words = rng.choices(ZH_WORDS, k=rng.randint(8, 22))
    for _ in range(rng.randint(0, 2)):
        words.insert(rng.randrange(1, len(words)), rng.choice(ZH_PUNCT))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 9999)))
    return "".join(words) + rng.choice("。。。！？")


def _en_sentence(rng: random.Random) -> str:
    words = rng.choices(EN_WORDS, k=rng.randint(8, 24))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), f"{rng.choice('ABKQX')}-{rng.randint(100, 9999)}")
    return " ".join(words).capitalize() + rng.choice("...?")


def _paragraphs(rng: random.Random, chinese: bool, chars: int) -> list[str]:
    sentence = _zh_sentence if chinese else _en_sentence
    joiner = "" if chinese else " "
    paragraphs: list[str] = []
    total = 0
    while total < chars:
        paragraph = joiner.join(sentence(rng) for _ in range(rng.randint(2, 7)))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return paragraphs


def _markdown(rng: random.Random, chinese: bool, paragraphs: list[str], title: str) -> str:
    lines = [f"# {title}", ""]
    for number, paragraph in enumerate(paragraphs):
        if number % 3 == 0:
            heading = "".join(rng.choices(ZH_WORDS, k=3)) if chinese else " ".join(rng.choices(EN_WORDS, k=3))
            lines += [f"## {heading}", ""]
        lines += [paragraph, ""]
    return "\n".join(lines)


def _sizes(rng: random.Random, files: int, total_bytes: int) -> list[int]:
    raw = [rng.lognormvariate(0, 0.8) for _ in range(files)]
    scale = total_bytes / sum(raw)
    return [max(300, int(value * scale)) for value in raw]


def _pdf_pages(paragraphs: list[str], chinese: bool) -> list[str]:
    """Pages of at most ~1,000 (zh) / 1,800 (en) characters, so each fits one A4 page."""
    limit = 1000 if chinese else 1800
    pages: list[str] = []
    page = ""
    for paragraph in paragraphs:
        for start in range(0, len(paragraph), limit):
            piece = paragraph[start : start + limit]
            if page and len(page) + len(piece) > limit:
                pages.append(page)
                page = ""
            page = f"{page}\n\n{piece}" if page else piece
    return [*pages, page] if page else pages


def generate_corpus(folder: Path, files: int, megabytes: float, pdf_share: float, copy_share: float) -> dict:
    """Write the corpus into ``folder`` (once: a ``corpus.json`` there marks it complete)."""
    marker = folder / "corpus.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from tests.support.sample_docs import write_pdf

    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(SEED)
    copies = int(files * copy_share)
    originals = files - copies
    sizes = _sizes(rng, originals, int(megabytes * 1_000_000))
    written: list[Path] = []
    for number, size in enumerate(sizes):
        chinese = rng.random() < 0.6
        chars = size // 3 if chinese else size  # UTF-8: 3 bytes per Chinese character
        paragraphs = _paragraphs(rng, chinese, chars)
        section = f"dept{number % 20:02d}"
        title = f"文档 {number}" if chinese else f"Document {number}"
        if rng.random() < pdf_share:
            path = folder / section / f"doc{number:05d}.pdf"
            write_pdf(path, _pdf_pages(paragraphs, chinese), cjk=chinese, title=title)
        elif rng.random() < 0.6:
            path = folder / section / f"doc{number:05d}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_markdown(rng, chinese, paragraphs, title), encoding="utf-8")
        else:
            path = folder / section / f"doc{number:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n\n".join(paragraphs), encoding="utf-8")
        written.append(path)
    for number, original in enumerate(rng.sample(written, copies)):
        copy = folder / "shared" / f"copy{number:05d}-{original.name}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
    all_files = [path for path in folder.rglob("*") if path.is_file()]
    info = {
        "files": len(all_files),
        "bytes": sum(path.stat().st_size for path in all_files),
        "pdfs": sum(path.suffix == ".pdf" for path in all_files),
        "copies": copies,
    }
    marker.write_text(json.dumps(info))
    return info


def edit_files(folder: Path, share: float) -> list[Path]:
    """Append a sentence to ``share`` of the text files (PDFs are left alone); returns them."""
    candidates = sorted(p for p in folder.rglob("*") if p.suffix in (".md", ".txt"))
    rng = random.Random(SEED + 1)
    chosen = rng.sample(candidates, max(1, round(len(candidates) * share)))
    for path in chosen:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"\n\nEdited on {time.strftime('%Y-%m-%d %H:%M:%S')}: {_en_sentence(rng)}\n")
    return chosen


# --- workers (each in its own process) -----------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class HashEmbeddings:
    """Deterministic, nearly free vectors: what grows with corpus size is then the pipeline alone."""

    name = "bench-hash"
    dimension = 64
    batch_size = 1  # as the real embedder on a CPU; the pipeline reads it
    min_relevance = 0.0
    lowercase = False

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=self.dimension).digest()
        vector = [byte - 127.5 for byte in digest]
        norm = math.sqrt(sum(value * value for value in vector))
        return [value / norm for value in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def work_kbqa(corpus: Path, data_dir: Path, hash_embedder: bool) -> dict[str, Any]:
    from ingest.pipeline import Ingestor
    from ingest.run import batch_job_settings
    from rag.config import load_settings
    from rag.embeddings import load_embeddings

    started = time.monotonic()
    settings = batch_job_settings(load_settings(data_dir=data_dir))  # as ingest/run.py runs it
    embeddings = HashEmbeddings() if hash_embedder else load_embeddings(settings)
    ingestor = Ingestor(settings, embeddings)  # type: ignore[arg-type]
    loaded = time.monotonic()
    stages = {}
    if hash_embedder:  # memory scan: the same work as ingest_folder's cold run, peak RSS per stage
        from ingest.pipeline import scan_folder

        files = scan_folder(corpus)[0]
        summary = ingestor.ingest_files(files, KB, progress=False, refresh_keyword_index=False)
        stages["peak_rss_mb_chunks_written"] = round(peak_rss_mb())
        ingestor.keyword_index(KB).rebuild()
    else:
        summary = ingestor.ingest_folder(corpus, KB, progress=False)
    done = time.monotonic()
    files = len(summary.added) + len(summary.updated) + len(summary.unchanged)
    return {
        "files": files,
        "chunks": ingestor.client.get_collection(KB).count(),
        "load_s": loaded - started,
        "ingest_s": done - loaded,
        "detail": {
            "written": summary.chunks_written,
            "added": len(summary.added),
            "updated": len(summary.updated),
            "unchanged": len(summary.unchanged),
            "failed": len(summary.failed),
            "embedding": embeddings.name,
            **stages,
        },
    }


def work_naive(corpus: Path, data_dir: Path) -> dict[str, Any]:
    """The LangChain tutorial pipeline; only the loaders are kbqa's, so parsing costs the same."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.loaders import LoadLimits, is_supported, load_file
    from rag.config import load_settings
    from rag.embeddings import PACKAGED_MODELS

    started = time.monotonic()
    settings = load_settings(data_dir=data_dir)
    model = settings.embedding_model.removeprefix("packaged:")
    path = PACKAGED_MODELS[model].locate() if model in PACKAGED_MODELS else settings.embedding_model
    embeddings = HuggingFaceEmbeddings(model_name=path)
    embeddings.embed_query("warm up")  # HuggingFaceEmbeddings loads lazily on some versions
    loaded = time.monotonic()
    limits = LoadLimits.from_settings(settings)
    documents = []
    files = 0
    for file in sorted(corpus.rglob("*")):
        if file.is_file() and is_supported(file):
            documents.extend(load_file(file, file.relative_to(corpus).as_posix(), limits))
            files += 1
    splitter = RecursiveCharacterTextSplitter(chunk_size=NAIVE_CHUNK, chunk_overlap=NAIVE_OVERLAP)
    chunks = splitter.split_documents(documents)
    Chroma.from_documents(chunks, embeddings, persist_directory=str(data_dir / "chroma-naive"))
    done = time.monotonic()
    return {
        "files": files,
        "chunks": len(chunks),
        "load_s": loaded - started,
        "ingest_s": done - loaded,
        "detail": {"embedding": path},
    }


def worker_main(args: argparse.Namespace) -> int:
    if args.worker == "naive":
        result = work_naive(args.corpus, args.run_dir)
    else:
        result = work_kbqa(args.corpus, args.run_dir, hash_embedder=args.hash_embedder)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result, ensure_ascii=False))
    return 0


# --- orchestration -------------------------------------------------------------------------------


def run_worker(
    pipeline: str, corpus: Path, run_dir: Path, settings_env: dict[str, str], *, hash_embedder: bool = False
) -> RunResult:
    command = [sys.executable, "-m", "bench.ingest", "--worker", pipeline, "--corpus", str(corpus)]
    command += ["--run-dir", str(run_dir)] + (["--hash-embedder"] if hash_embedder else [])
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(**settings_env), capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{pipeline} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    data = json.loads(lines[-1].removeprefix("RESULT "))
    return RunResult(pipeline=pipeline, **data)


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def result_row(label: str, result: RunResult, naive: RunResult | None = None) -> str:
    ratio = f"{naive.ingest_s / result.ingest_s:.2f}×" if naive is not None and result.ingest_s else ""
    return (
        f"| {label} | {result.files} | {result.chunks} | {result.load_s:.1f} | {result.ingest_s:.1f} | "
        f"{result.files_per_s:.1f} | {result.chunks_per_s:.1f} | {result.peak_rss_mb:.0f} | {ratio} | "
        f"{load_average()} |"
    )


HEADER = (
    "| run | files | chunks | model load s | ingest s | files/s | chunks/s | peak RSS MB | naive ÷ this "
    "| load avg |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def settings_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"KBQA_EMBEDDING_MODEL": args.embedding, "KBQA_EMBEDDING_FALLBACK": ""}
    for item in args.set:
        key, _, value = item.partition("=")
        env[f"KBQA_{key.upper()}"] = value
    return env


def compare(args: argparse.Namespace) -> int:
    corpus = args.data_dir / f"corpus-{args.files}-{args.mb:g}mb"
    info = generate_corpus(corpus, args.files, args.mb, args.pdf_share, args.copy_share)
    print(machine())
    print(
        f"corpus {corpus}: {info['files']} files, {info['bytes'] / 1e6:.1f} MB, {info['pdfs']} PDFs, "
        f"{info['copies']} copies; embedding {args.embedding}; kbqa settings {args.set or 'default'}\n"
    )
    print(HEADER, flush=True)
    env = settings_env(args)
    kbqa_dir = args.data_dir / "run-kbqa"
    results: dict[str, list[RunResult]] = {"kbqa": [], "naive": []}
    for round_number in range(1, args.rounds + 1):
        order = ("kbqa", "naive") if round_number % 2 else ("naive", "kbqa")
        for pipeline in order:
            run_dir = args.data_dir / f"run-{pipeline}"
            shutil.rmtree(run_dir, ignore_errors=True)
            result = run_worker(pipeline, corpus, run_dir, env)
            results[pipeline].append(result)
            naive = results["naive"][-1] if pipeline == "kbqa" and results["naive"] else None
            print(result_row(f"{pipeline} cold, round {round_number}", result, naive), flush=True)
    best = {name: min(runs, key=lambda r: r.ingest_s) for name, runs in results.items()}
    kbqa_s, naive_s = best["kbqa"].ingest_s, best["naive"].ingest_s
    print(f"\nbest of {args.rounds}: kbqa {kbqa_s:.1f} s, naive {naive_s:.1f} s", end="")
    print(f": kbqa {naive_s / kbqa_s:.2f}× as fast\n")
    if args.no_reingest:
        return 0
    cold = results["kbqa"][-1]
    print(HEADER)
    unchanged = run_worker("kbqa", corpus, kbqa_dir, env)
    print(result_row("kbqa re-run, nothing changed", unchanged), flush=True)
    backup = args.data_dir / "corpus-backup"
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(corpus, backup)
    try:
        edited = edit_files(corpus, args.change_share)
        changed = run_worker("kbqa", corpus, kbqa_dir, env)
        print(result_row(f"kbqa re-run, {len(edited)} files edited", changed), flush=True)
    finally:
        shutil.rmtree(corpus)
        shutil.move(backup, corpus)
    print(
        f"\ncold {cold.ingest_s:.1f} s; unchanged re-run {unchanged.ingest_s:.2f} s "
        f"({cold.ingest_s / unchanged.ingest_s:.0f}× faster); {args.change_share:.0%} edited "
        f"{changed.ingest_s:.1f} s ({cold.ingest_s / changed.ingest_s:.1f}× faster)"
    )
    return 0


def memory(args: argparse.Namespace) -> int:
    print(machine())
    print(f"kbqa with a hash embedder, chunk_size {MEMORY_CHUNK}; peak RSS per corpus size\n")
    print(HEADER, flush=True)
    env = {"KBQA_CHUNK_SIZE": str(MEMORY_CHUNK), "KBQA_CHUNK_OVERLAP": "20", **settings_env(args)}
    for target in args.memory:
        # Measured: ~82 bytes of this corpus per chunk at this chunk size; 1 file per ~85 chunks.
        megabytes = target * 82 / 1e6
        files = max(10, target // 85)
        corpus = args.data_dir / f"memory-{target}-{megabytes:.1f}mb"
        generate_corpus(corpus, files, megabytes, 0.0, 0.0)
        run_dir = args.data_dir / f"run-memory-{target}"
        shutil.rmtree(run_dir, ignore_errors=True)
        result = run_worker("kbqa", corpus, run_dir, env, hash_embedder=True)
        before = result.detail.get("peak_rss_mb_chunks_written")
        print(result_row(f"~{target} chunks (peak before the BM25 rebuild: {before} MB)", result), flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in megabytes")
    parser.add_argument("--pdf-share", type=float, default=0.05)
    parser.add_argument("--copy-share", type=float, default=0.05, help="files that copy another one")
    parser.add_argument("--change-share", type=float, default=0.01, help="files edited for the re-run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--embedding", default="packaged:m3e-small")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a kbqa setting")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/kbqa-bench/ingest"))
    parser.add_argument("--no-reingest", action="store_true")
    parser.add_argument("--memory", type=int, nargs="+", metavar="CHUNKS", help="memory scan instead")
    parser.add_argument("--worker", choices=["kbqa", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hash-embedder", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    return memory(args) if args.memory else compare(args)


if __name__ == "__main__":
    sys.exit(main())
