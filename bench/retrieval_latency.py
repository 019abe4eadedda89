"""Retrieval latency at 10k and 100k chunks: in-process (the service) and through the HTTP API.

For each ``--chunks`` size a knowledge base of synthetic chunks (two thirds Chinese, one third English,
~150-350 characters, product codes and numbers in them) is built once and cached under ``--data-dir``.
The chunks go straight into Chroma and the keyword index — ingestion's loaders and splitter are not
what is measured here. Their vectors are, with ``--vectors synthetic`` (default), cheap and
deterministic: the real embedding of one prototype text per topic plus seeded noise (cosine ~0.94 to
the prototype), so the vector space has realistic clusters without embedding 100k chunks on a 2-core
CPU (the packaged m3e-small embeds 10-40 chunks/s there, i.e. 1-3 hours for 100k); ``--vectors real``
embeds every chunk with the real embedder. Questions are always embedded by the real embedder.

Measured, after a warm-up, over ``--questions`` varied questions (zh and en, some off-topic), for the
retrieval modes given (hybrid, vector), each pass ``--rounds`` times:

* ``retriever``: ``KnowledgeBaseService.retriever(kb).invoke(q)``, gated, built per question as a chat
  builds it (collection lookups included): embed + vector search + BM25 + fusion + gate;
* ``search``: ``KnowledgeBaseService.search(kb, q)`` (the ``query`` command's path, ungated);
* ``http``: ``python app.py`` started here over the same data, its LLM the fake OpenAI-compatible
  server of ``tests/support/fake_openai.py`` answering at once, asked two ways:
  ``http search`` = ``POST /v1/knowledge_bases/KB/search`` (the ``search`` path above over HTTP), and
  ``http chat`` = ``POST /v1/chat/completions`` (non-streaming, ``max_tokens`` 1): retrieval + the
  chat turn's own work + one instant LLM call (none when the gate refuses); the fake LLM's own round
  trip is printed beside it.

Query translation and the reranker are off (``KBQA_QUERY_TRANSLATION=off``, ``KBQA_RERANKER_MODEL=none``):
translation is an LLM call and the target is "without the reranker". Usage (from the project root)::

    .venv/bin/python bench/retrieval_latency.py [--chunks 10000 100000] [--data-dir /tmp/kbqa-bench] \\
        [--modes hybrid vector] [--paths retriever search http] [--questions 200] [--rounds 2] \\
        [--vectors synthetic|real] [--embedding packaged:m3e-small] [--profile DIR]

The machine is shared and has 2 cores: the load average is printed with every row; run it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: tests.support (the fake LLM) lives at the root
    sys.path.insert(0, str(ROOT))

from bench.load import child_env, free_port, serve_app  # noqa: E402
from rag.companion import load_companion  # noqa: E402
from rag.config import Settings, load_settings  # noqa: E402
from rag.embeddings import SentenceTransformerEmbeddings, load_embeddings  # noqa: E402
from rag.keyword_index import KeywordIndex, keyword_folder  # noqa: E402
from rag.service import KnowledgeBaseService  # noqa: E402
from rag.store import open_vector_store  # noqa: E402

KB = "bench"
SEED = 20261124
TOPICS = 400
NOISE = 0.35  # synthetic vector = prototype + noise of this norm, normalised: cosine ~0.94 to it


def _words(text: str, separator: str | None = None) -> list[str]:
    """Word lists read better as text than as list literals."""
    return [word.strip() for word in text.split(separator) if word.strip()]


ZH_PLACES = _words(
    "北京总部 上海办公室 深圳研发中心 杭州分公司 成都客服中心 广州仓库 武汉实验室 西安数据中心"
)
ZH_ITEMS = _words("""年假 报销 班车 会议室 食堂 门禁卡 打印机 服务器 采购合同 发票 新员工培训 绩效考核
    出差补贴 医疗保险 工资发放 加班调休 访客登记 网络账号 邮箱密码 笔记本电脑 停车位 快递收发 安全演练
    数据备份 软件许可 值班安排 离职手续 健身房 图书借阅 团建活动""")
ZH_ASPECTS = _words("申请流程 负责人 开放时间 费用标准 联系电话 审批时限 所在楼层 注意事项")
EN_PLACES = _words("the London office|the Berlin site|the Singapore hub|the Austin lab|the Paris branch", "|")
EN_ITEMS = _words(
    """expense claims|the shuttle bus|meeting rooms|the canteen|badge access|printers|the build servers|
    purchase orders|invoices|onboarding|performance reviews|travel allowance|health insurance|payroll|
    overtime|visitor registration|VPN accounts|password resets|laptops|parking|the mail room|fire drills|
    backups|software licences|on-call rotas""",
    "|",
)
EN_ASPECTS = _words("approval steps|owner|opening hours|cost limit|phone extension|deadline|floor|rules", "|")
OFF_TOPIC = [
    "法国的首都是哪里？", "如何烤面包？", "明天会下雨吗？", "What is the capital of France?",
    "How do I bake sourdough bread?", "Who won the 1998 World Cup?",
]  # fmt: skip
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


# --- the synthetic knowledge base -----------------------------------------------------------------------
def _topic(number: int) -> tuple[str, str, str, str]:
    """(language, place, item, aspect) of a topic: two thirds Chinese."""
    rng = random.Random(SEED + number)
    if number % 3:
        return "zh", rng.choice(ZH_PLACES), rng.choice(ZH_ITEMS), rng.choice(ZH_ASPECTS)
    return "en", rng.choice(EN_PLACES), rng.choice(EN_ITEMS), rng.choice(EN_ASPECTS)


def _prototype(number: int) -> str:
    language, place, item, aspect = _topic(number)
    if language == "zh":
        return f"{place}的{item}{aspect}说明。"
    return f"Notes on the {aspect} of {item} at {place}."


def chunk_text(index: int) -> str:
    """Chunk ``index``'s text: its topic's sentences with its own numbers, names and codes."""
    rng = random.Random(SEED * 7 + index)
    language, place, item, aspect = _topic(index % TOPICS)
    code = f"{rng.choice(LETTERS)}{rng.choice(LETTERS)}-{rng.randint(1000, 9999)}"
    if language == "zh":
        sentences = [
            f"{place}的{item}{aspect}如下。",
            f"每次申请需在{rng.randint(2, 30)}个工作日内提交，由{rng.choice(ZH_PLACES)}行政部审核。",
            f"相关费用每月不超过{rng.randint(1, 90) * 100}元，超出部分需部门负责人签字。",
            f"如有疑问请拨打分机{rng.randint(1000, 8999)}，或在系统中提交工单{code}。",
            f"{item}的{rng.choice(ZH_ASPECTS)}自{rng.randint(2019, 2026)}年{rng.randint(1, 12)}月起执行。",
            f"{rng.choice(ZH_ITEMS)}与{item}不同，请勿混淆，详情见第{rng.randint(1, 40)}条。",
            f"位于{rng.randint(1, 30)}楼{rng.randint(1, 20)}号房间，可容纳{rng.randint(4, 60)}人。",
        ]
    else:
        sentences = [
            f"The {aspect} of {item} at {place} are described here.",
            f"Requests must be filed within {rng.randint(2, 30)} working days; facilities checks them.",
            f"The monthly limit is {rng.randint(1, 90) * 10} euros; above it a manager signs off.",
            f"Questions go to extension {rng.randint(1000, 8999)} or ticket {code} in the service desk.",
            f"This rule applies from {rng.choice(['March', 'June', 'October'])} {rng.randint(2019, 2026)}.",
            f"Do not confuse it with {rng.choice(EN_ITEMS)}; see section {rng.randint(1, 40)}.",
            f"Room {rng.randint(100, 999)} on floor {rng.randint(1, 30)} seats {rng.randint(4, 60)} people.",
        ]
    rng.shuffle(sentences)
    return (
        "".join(sentences[: rng.randint(3, 6)])
        if language == "zh"
        else " ".join(sentences[: rng.randint(3, 6)])
    )


def questions(count: int) -> list[str]:
    """Varied questions: half zh, half en, by topic, some with a code or number, some off-topic."""
    rng = random.Random(SEED - 1)
    asked = []
    for number in range(count):
        if number % 10 == 9:
            asked.append(OFF_TOPIC[number // 10 % len(OFF_TOPIC)])
            continue
        if number % 2:
            place, item, aspect = rng.choice(ZH_PLACES), rng.choice(ZH_ITEMS), rng.choice(ZH_ASPECTS)
            asked.append(
                rng.choice(
                    [
                        f"{place}的{item}{aspect}是什么？",
                        f"{item}的{aspect}怎么查？",
                        f"请问{place}{item}找谁？",
                        f"工单{rng.choice('KLMX')}{rng.choice('ABQR')}-{rng.randint(1000, 9999)}是关于什么？",
                    ]
                )
            )
        else:
            place, item, aspect = rng.choice(EN_PLACES), rng.choice(EN_ITEMS), rng.choice(EN_ASPECTS)
            asked.append(
                rng.choice(
                    [
                        f"What is the {aspect} for {item} at {place}?",
                        f"Who is the {aspect} of {item}?",
                        f"How many people does room {rng.randint(100, 999)} seat?",
                        f"What does ticket {rng.choice('KLMX')}Q-{rng.randint(1000, 9999)} mean?",
                    ]
                )
            )
    return asked


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(settings: Settings, embedder: SentenceTransformerEmbeddings, chunks: int, vectors: str) -> None:
    """The knowledge base of ``chunks`` synthetic chunks under ``settings.data_dir``, unless already there."""
    done = settings.data_dir / "built.json"
    if done.exists():
        return
    started = time.monotonic()
    client = KnowledgeBaseService(settings, embeddings=embedder).client
    with contextlib.suppress(Exception):
        client.delete_collection(KB)  # a build killed half-way
    open_vector_store(client, KB, embedder, create=True)  # records the embedding model, as ingestion does
    collection = client.get_collection(KB)
    prototypes = _unit(np.asarray(embedder.embed_documents([_prototype(t) for t in range(TOPICS)])))
    rng = np.random.default_rng(SEED)
    batch = min(2000, client.get_max_batch_size())
    for start in range(0, chunks, batch):
        ids = range(start, min(start + batch, chunks))
        texts = [chunk_text(i) for i in ids]
        if vectors == "real":
            matrix = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        else:
            noise = _unit(rng.standard_normal((len(texts), prototypes.shape[1])))
            matrix = _unit(prototypes[[i % TOPICS for i in ids]] + NOISE * noise).astype(np.float32)
        collection.add(
            ids=[f"c{i:07d}" for i in ids],
            documents=texts,
            embeddings=matrix,
            metadatas=[{"source": f"doc{i // 20:05d}.md", "chunk": i % 20} for i in ids],
        )
        print(
            f"  {start + len(texts)}/{chunks} chunks in Chroma ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    folder = keyword_folder(settings.data_dir, KB)
    companion = load_companion(settings.companion_model, embedder)  # as ingestion keeps it
    KeywordIndex(
        folder, collection, vector_limit=settings.exact_search_max_chunks, companion=companion
    ).rebuild()
    elapsed = time.monotonic() - started
    done.write_text(
        json.dumps({"chunks": chunks, "vectors": vectors, "build_s": round(elapsed)}), encoding="utf-8"
    )
    print(f"  built in {elapsed:.0f} s (keyword index included)", flush=True)


# --- measuring ----------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def timed(call: Callable[[str], Any], asked: Sequence[str], warmup: int) -> list[float]:
    for question in asked[:warmup]:
        call(question)
    samples = []
    for question in asked:
        started = time.perf_counter()
        call(question)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def row(label: str, samples: Sequence[float], load: str) -> str:
    return (
        f"{label:<44} {len(samples):>4} {percentile(samples, 0.5):>8.1f} {percentile(samples, 0.95):>8.1f} "
        f"{statistics.fmean(samples):>8.1f}   {load}"
    )


HEADER = f"{'what':<44} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}   load average (1/5/15 min)"


def in_process(
    settings: Settings, embedder: SentenceTransformerEmbeddings, args: argparse.Namespace, label: str
) -> None:
    service = KnowledgeBaseService(settings, embeddings=embedder)
    asked = questions(args.questions)
    calls: dict[str, Callable[[str], Any]] = {
        "retriever": lambda q: service.retriever(KB).invoke(q),
        "search": lambda q: service.search(KB, q),
    }
    for path in [p for p in args.paths if p in calls]:
        for round_number in range(1, args.rounds + 1):
            profiler = cProfile.Profile() if args.profile and round_number == 1 else None
            if profiler:
                profiler.enable()
            samples = timed(calls[path], asked, args.warmup)
            if profiler:
                profiler.disable()
                _report_profile(profiler, args.profile / f"{label}-{path}.prof".replace(" ", "_"))
            print(row(f"{label} {path} #{round_number}", samples, load_average()), flush=True)
    if args.breakdown:
        _breakdown(service, asked, label)


def _breakdown(service: KnowledgeBaseService, asked: Sequence[str], label: str) -> None:
    """p50 of each step alone, to see where a query's time goes."""
    retriever = service.retriever(KB)
    steps: dict[str, Callable[[str], Any]] = {
        "build retriever (collection lookups)": lambda q: service.retriever(KB),
        "embed query": lambda q: service.embeddings.embed_query(q),
        "vector search (Chroma)": lambda q: retriever.store.similarity_search_by_vector_with_relevance_scores(
            vectors[q], k=20
        ),
    }
    vectors = {q: service.embeddings.embed_query(q) for q in asked}
    if retriever.keyword is not None:
        keyword = retriever.keyword
        steps["keyword search (BM25)"] = lambda q: keyword.search(q, 20)
    for name, step in steps.items():
        print(row(f"{label}   {name}", timed(step, asked, 10), load_average()), flush=True)


def _report_profile(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(path))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
    print(f"  profile saved to {path}; top 30 by cumulative time:\n{text.getvalue()}", flush=True)


# --- HTTP ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def app_server(settings: Settings, llm_url: str, mode: str, log_path: Path) -> Iterator[str]:
    """``python app.py`` over the bench data (its own process, as deployed); yields its base URL."""
    env = child_env(
        KBQA_DATA_DIR=str(settings.data_dir),
        KBQA_DEFAULT_KB=KB,
        KBQA_EMBEDDING_MODEL=settings.embedding_model,
        KBQA_RERANKER_MODEL="none",
        KBQA_QUERY_TRANSLATION="off",
        KBQA_RETRIEVAL_MODE=mode,
        KBQA_LLM_BASE_URL=llm_url,
    )
    with serve_app(env, log_path=log_path) as url:
        yield url


def over_http(settings: Settings, args: argparse.Namespace, mode: str, label: str) -> None:
    from tests.support.fake_openai import FakeOpenAIServer

    asked = questions(args.questions)
    log_path = settings.data_dir / "app-bench.log"
    with (
        FakeOpenAIServer(free_port(), reply="ok") as llm,
        app_server(settings, llm.url, mode, log_path) as url,
        httpx.Client(timeout=60) as client,
    ):
        refused: list[bool] = []

        def chat(question: str) -> None:
            body = {
                "model": f"kbqa:{KB}",
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 1,
            }
            response = client.post(f"{url}/v1/chat/completions", json=body)
            response.raise_for_status()
            refused.append(not response.json().get("sources"))

        def direct(_: str) -> None:
            body = {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 1,
            }
            client.post(f"{llm.url}/chat/completions", json=body).raise_for_status()

        def search(question: str) -> None:
            response = client.post(f"{url}/v1/knowledge_bases/{KB}/search", json={"query": question})
            response.raise_for_status()

        for round_number in range(1, args.rounds + 1):
            samples = timed(search, asked, args.warmup)
            print(row(f"{label} http search #{round_number}", samples, load_average()), flush=True)
        for round_number in range(1, args.rounds + 1):
            samples = timed(chat, asked, args.warmup)
            share = sum(refused[-len(asked) :]) / len(asked)
            name = f"{label} http chat #{round_number} ({share:.0%} refused)"
            print(row(name, samples, load_average()), flush=True)
        print(row(f"{label}   fake LLM alone, round trip", timed(direct, asked[:50], 5), load_average()))


# --- main ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/kbqa-bench"))
    parser.add_argument("--modes", nargs="+", choices=["hybrid", "vector"], default=["hybrid", "vector"])
    parser.add_argument(
        "--paths", nargs="+", choices=["retriever", "search", "http"], default=["retriever", "search", "http"]
    )
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vectors", choices=["synthetic", "real"], default="synthetic")
    parser.add_argument("--embedding", default="packaged:m3e-small")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false", help="skip per-step p50s")
    parser.add_argument("--profile", type=Path, help="cProfile the first round of each pass into this folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cores, load average {load_average()}")
    base = load_settings(embedding_model=args.embedding, embedding_fallback="none")
    embedder = load_embeddings(base)
    for chunks in args.chunks:
        data_dir = args.data_dir / f"{chunks}-{args.vectors}-{embedder.name.replace('/', '_')}"
        settings = load_settings(
            data_dir=data_dir, embedding_model=args.embedding, embedding_fallback="none",
            reranker_model="none", query_translation="off",
        )  # fmt: skip
        print(
            f"knowledge base: {chunks} chunks, {args.vectors} vectors, {embedder.name}, {data_dir}",
            flush=True,
        )
        build(settings, embedder, chunks, args.vectors)
        print(HEADER)
        for mode in args.modes:
            label = f"{chunks // 1000}k {mode}" if chunks >= 1000 else f"{chunks} {mode}"
            in_process(settings.model_copy(update={"retrieval_mode": mode}), embedder, args, label)
            if "http" in args.paths:
                over_http(settings, args, mode, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
