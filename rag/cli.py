"""``python -m rag``: query, stats, ask, chat, llm — the command-line contracts of DESIGN.md.

Other tools script against ``query``/``stats``/``ask --json`` output, so their shapes are fixed and
tested. Errors a user can fix are printed as one ``error:`` line with exit code 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.config import Settings, load_settings


class _UsageError(Exception):
    pass


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="where kbqa keeps its state (KBQA_DATA_DIR)")
    parser.add_argument("--config", type=Path, help="YAML settings file (KBQA_CONFIG)")


def _kb_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kb", help="knowledge base name (default: the configured default_kb)")
    parser.add_argument("-k", "--top-k", type=_positive, help="how many chunks to retrieve")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="kbqa: ask your documents.")
    commands = parser.add_subparsers(dest="command", required=True)

    query = commands.add_parser("query", help="retrieval only: the best chunks for a question")
    query.add_argument("question", nargs="?", help="the question (omit with --jsonl)")
    _kb_args(query)
    mode = query.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print a JSON list")
    mode.add_argument("--jsonl", action="store_true", help="one question per stdin line, one JSON line each")

    stats = commands.add_parser("stats", help="size and embedding model of knowledge bases")
    stats.add_argument("--kb", help="one knowledge base (default: all)")
    stats.add_argument("--json", action="store_true")

    ask = commands.add_parser("ask", help="answer a question from the knowledge base, with sources")
    ask.add_argument("question")
    _kb_args(ask)
    ask.add_argument(
        "--json", action="store_true", help='print {"answer", "sources", "withdrawn", "refused"} when done'
    )

    chat = commands.add_parser("chat", help="ask questions interactively")
    _kb_args(chat)

    evaluate = commands.add_parser("eval", help="retrieval and answer metrics on a question file (JSONL)")
    evaluate.add_argument("questions", type=Path, help="JSONL: id, question, type, evidence, answer_keywords")
    _kb_args(evaluate)
    evaluate.add_argument("--no-llm", action="store_true", help="retrieval only; no LLM needed")
    evaluate.add_argument("--json", action="store_true", help="print the whole report as JSON")
    evaluate.add_argument("--report", type=Path, help="also write the JSON report to this file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")

    llm = commands.add_parser("llm", help="run the local vLLM server in the foreground")
    llm.add_argument("--port", type=int, help="port (default: KBQA_LLM_PORT)")

    commands.add_parser("prepare-llm", help="build the packaged offline LLM (idempotent); prints its folder")

    shown = commands.add_parser("settings", help="every setting: its variable, value in force and meaning")
    shown.add_argument("--json", action="store_true")

    delete = commands.add_parser("delete", help="delete a knowledge base, or one document of it")
    delete.add_argument("--kb", required=True, help="the knowledge base (never the default by omission)")
    delete.add_argument("--document", metavar="SOURCE", help="only this document (its path as listed)")

    for sub in (query, stats, ask, chat, evaluate, llm, delete, shown):
        _common(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        data_dir=getattr(args, "data_dir", None),
        config=getattr(args, "config", None),
        llm_port=getattr(args, "port", None),
    )


def _service(settings: Settings) -> Any:
    from rag.service import KnowledgeBaseService

    return KnowledgeBaseService(settings)


def _kb(args: argparse.Namespace, settings: Settings) -> str:
    from rag.store import validate_kb_name

    return validate_kb_name(settings.default_kb if args.kb is None else args.kb)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    kb = _kb(args, settings)
    if args.jsonl:
        if args.question is not None:
            raise _UsageError("query --jsonl reads its questions from stdin: give no QUESTION")
        service.require_knowledge_base(kb)  # even when stdin holds no question
        for number, line in enumerate(sys.stdin.buffer):
            # One output line per input line, in order, so callers can pair them by position: a blank
            # line gets an empty result, bytes that are not UTF-8 become U+FFFD instead of ending the
            # batch, and the byte-order mark an editor may put first is not part of the question.
            question = line.decode("utf-8", errors="replace").removeprefix("\ufeff" if number == 0 else "")
            question = question.strip()
            results = service.search(kb, question, k=args.top_k) if question else []
            print(_dump({"question": question, "results": results}), flush=True)
        return 0
    if not (args.question or "").strip():
        raise _UsageError("query needs a QUESTION (or --jsonl with questions on stdin)")
    results = service.search(kb, args.question, k=args.top_k)
    from rag.prompts import format_location

    if args.json:
        print(_dump(results))
    else:
        for rank, hit in enumerate(results, start=1):
            where = format_location(hit["source"], hit["page"])
            print(f"{rank}. [{hit['score']:.3f}] {where}\n   {' '.join(hit['text'].split())[:200]}")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from rag.store import validate_kb_name

    stats = _service(settings).stats(None if args.kb is None else validate_kb_name(args.kb))
    if args.json:
        print(_dump(stats))
        return 0
    rows = [{"kb": args.kb, **stats}] if isinstance(stats, dict) else stats
    if not rows:
        print("no knowledge bases yet: ingest a folder with `python ingest/run.py DIR --kb NAME`")
    for row in rows:
        print(
            f"{row['kb']}: {row['files']} files, {row['chunks']} chunks, "
            f"{row['embedding_model']} (dim {row['dimension']})"
        )
    return 0


_SECRETS = {"api_key", "llm_api_key"}


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """The settings in force, so no README table has to list all of them to be complete."""
    rows = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if name in _SECRETS and value not in (None, "EMPTY"):
            value = "(set)"
        value = str(value) if isinstance(value, Path) else value
        variable = name.upper() if field.validation_alias else f"KBQA_{name.upper()}"  # another tool's own
        rows.append({"variable": variable, "value": value, "meaning": field.description or ""})
    if args.json:
        print(_dump(rows))
        return 0
    for row in rows:
        print(f"{row['variable']} = {row['value']}")
        if row["meaning"]:
            print(f"    {row['meaning']}")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from rag.prompts import counted

    service = _service(settings)
    kb = _kb(args, settings)
    if args.document is None:
        chunks = service.stats(kb)["chunks"]
        service.delete_knowledge_base(kb)
        print(f"deleted knowledge base '{kb}' ({counted(chunks, 'chunk')})")
        return 0
    origin = next((d["origin"] for d in service.list_documents(kb) if d["source"] == args.document), None)
    chunks = service.delete_document(kb, args.document)
    print(f"deleted {args.document} from '{kb}' ({counted(chunks, 'chunk')})")
    if origin == "folder":
        print("note: it is still in the ingested folder; delete it there too, or the next run adds it again")
    return 0


def _print_sources(sources: list[dict[str, Any]], *, refused: bool) -> None:
    """The cited passages; after a refusal, the passages searched, said as such (they back nothing)."""
    if not sources:
        return
    from rag.prompts import format_location

    print("\nSearched (none of these answers it):" if refused else "\nSources:")
    for source in sources:
        where = format_location(source["source"], source["page"], source.get("section"))
        print(f"  [{source['index']}] {where}  (score {source['score']:.2f})")


def _answer(
    chain: Any, question: str, *, stream: bool, history: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Run the chain once; with ``stream`` print the answer as it arrives."""
    from rag.answer_check import final_answer, is_refusal_turn

    answer: list[str] = []
    sources: list[dict[str, Any]] = []
    withdrawn: dict[str, str] | None = None
    for chunk in chain.stream({"question": question, "history": list(history)}):
        if "sources" in chunk:
            sources = chunk["sources"]
        if "answer" in chunk:
            answer.append(chunk["answer"])
            if stream:
                print(chunk["answer"], end="", flush=True)
        withdrawn = chunk.get("withdrawn", withdrawn)
    streamed = "".join(answer)
    refused = is_refusal_turn(streamed, sources, withdrawn)
    if stream:
        print()
        if withdrawn:
            print(f"\n(withdrawn: the answer {withdrawn['reason']})\n{withdrawn['replacement']}")
        _print_sources(sources, refused=refused)
    return {
        "answer": final_answer(streamed, withdrawn),
        "sources": sources,
        "withdrawn": withdrawn,
        "refused": refused,
    }


def _chain(args: argparse.Namespace, settings: Settings, service: Any = None, llm: Any = None) -> Any:
    """The RAG chain; ``llm`` (an ``LLMProvider``) is shared so the server's model is asked for once."""
    from rag.llm import LLMProvider

    service = service or _service(settings)
    kb = _kb(args, settings)
    service.retriever(kb)  # fail on an unknown knowledge base before contacting the LLM
    llm = llm or LLMProvider(settings)
    return service.chain(kb, llm.chat_model(), k=args.top_k, condense_llm=llm.rewrite_model())


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    chain = _chain(args, settings)
    result = _answer(chain, args.question, stream=not args.json)
    if args.json:
        print(_dump(result))
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    return chat_loop(_chain(args, settings), llm_url=settings.effective_llm_url)


def chat_loop(chain: Any, read: Callable[[str], str] = input, *, llm_url: str = "the LLM server") -> int:
    """One conversation: each question is answered with the earlier turns as its history, so a
    follow-up ("那成都呢？") is rewritten from them as in the web UI and the API; ``new`` starts over."""
    from rag.llm import LLMRequestError, llm_errors

    print("Ask a question about your documents; follow-ups refer to earlier answers.")
    print("'new' starts a new conversation; an empty line or Ctrl-D quits.")
    history: list[tuple[str, str]] = []
    while True:
        try:
            question = read("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question or question in {"quit", "exit"}:
            return 0
        if question == "new":
            history.clear()
            print("(new conversation)")
            continue
        try:
            with llm_errors(llm_url):
                result = _answer(chain, question, stream=True, history=history)
        except LLMRequestError as error:  # a question too long for the model: the conversation goes on
            print(f"\nerror: {error}")
            continue
        history += [("user", question), ("assistant", result["answer"])]


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluation import evaluate, format_report, load_questions

    if not args.questions.is_file():
        what = "is not a file" if args.questions.exists() else "does not exist"
        raise _UsageError(f"question file {args.questions} {what}")
    if args.report and not args.report.parent.is_dir():
        # found out before the evaluation, not after minutes of it
        raise _UsageError(f"cannot write the report to {args.report}: {args.report.parent} is not a folder")
    questions = load_questions(args.questions)
    service = _service(settings)
    kb = _kb(args, settings)
    service.retriever(kb)  # fail on an unknown knowledge base first

    translate = None
    answer = None
    if not args.no_llm:
        from rag.llm import LLMProvider

        llm = LLMProvider(settings)
        chain = _chain(args, settings, service, llm)
        translate = service.translator(llm.rewrite_model())

        def answer(question: str) -> dict[str, Any]:
            return _answer(chain, question, stream=False)

    def retrieve(question: str, k: int, gated: bool) -> list[dict[str, Any]]:
        # With an LLM, retrieval is measured as answering uses it (translated query included).
        retriever = service.retriever(kb, k=k, gated=gated, translate=translate)
        return [
            {"text": document.page_content, "source": document.metadata.get("source")}
            for document in retriever.invoke(question)
        ]

    report = evaluate(questions, retrieve, answer, prompts_dir=settings.prompts_dir, progress=not args.quiet)
    report["kb"] = kb
    report["settings"] = {
        "retrieval_mode": service.retrieval_mode,
        "top_k": args.top_k or settings.top_k,
        "chunk_size": settings.chunk_size,
        "reranker": service.reranker.name if service.reranker else None,
        "query_translation": settings.query_translation if translate is not None else "off",
        "embedding_model": service.embeddings.name,
    }
    print(_dump(report) if args.json else format_report(report))
    if args.report:
        try:
            args.report.write_text(_dump(report), encoding="utf-8")
        except OSError as error:
            print(
                f"error: cannot write the report to {args.report}: {error.strerror or error}", file=sys.stderr
            )
            return 1
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_llm(args: argparse.Namespace, settings: Settings) -> int:
    """Foreground server; SIGINT/SIGTERM stop it at any moment, start-up included."""
    from rag.llm import ManagedVLLM

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ManagedVLLM(settings) as server:
            print(f"ready: {server.url}", flush=True)
            while server.running:
                time.sleep(1.0)
            print(f"error: the vLLM server exited; see its log at {server.log_path}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0


def cmd_prepare_llm(args: argparse.Namespace, settings: Settings) -> int:
    from rag.llm import prepare_packaged_model

    print(prepare_packaged_model(settings))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "query": cmd_query,
    "stats": cmd_stats,
    "ask": cmd_ask,
    "chat": cmd_chat,
    "eval": cmd_eval,
    "llm": cmd_llm,
    "prepare-llm": cmd_prepare_llm,
    "delete": cmd_delete,
    "settings": cmd_settings,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rag.embeddings import EmbeddingModelError
    from rag.llm import LLMUnavailableError, llm_errors
    from rag.store import StoreError

    try:
        settings = _settings(args)
        with llm_errors(settings.effective_llm_url):  # the server refusing a question: exit 2, said why
            return COMMANDS[args.command](args, settings)
    except (_UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (StoreError, EmbeddingModelError, LLMUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
