"""The web UI: a Gradio Blocks chat with a sources panel and knowledge-base management.

Every callback calls the same ``ChatService`` / ``KnowledgeBaseService`` methods as the HTTP API, so
the browser and an OpenAI client always get the same answer, the same sources and the same rules
for uploads; this module only arranges widgets and formats results for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import gradio as gr

from ingest.loaders import LOADERS
from rag.chat import AnswerDelta, ChatParams, ChatService, SourcesFound, TurnFinished
from rag.config import Settings
from rag.llm import LLMRequestError, LLMUnavailableError
from rag.prompts import format_location
from rag.service import KnowledgeBaseService, UploadError
from rag.store import StoreError

_NO_SOURCES = "*No passages cited yet.*"
_DOCUMENT_HEADERS = ["document", "chunks", "origin"]


def _text(content: Any) -> str:
    """Chatbot message content (a string, a part, or a list of parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, list | tuple):
        return "".join(_text(part) for part in content)
    return ""


def format_sources(sources: list[dict[str, Any]], citations: list[dict[str, Any]] | None = None) -> str:
    if not sources:
        return "*The knowledge base holds no passage relevant to this question.*"
    blocks = [
        f"**Unsupported citation [{check['index']}]:** "
        f"passage {check['index']} does not back the sentence citing it."
        for check in citations or []
        if not check["supported"]
    ]
    for source in sources:
        where = format_location(source["source"], source["page"])
        score = f" · score {source['score']:.2f}" if source.get("score") is not None else ""
        passage = "\n".join(f"> {line}" if line.strip() else ">" for line in source["text"].splitlines())
        blocks.append(f"**[{source['index']}] {where}**{score}\n\n{passage}")
    return "\n\n".join(blocks)


def shown_answer(streamed: str, finished: TurnFinished) -> str:
    """The chat message once the turn is over: a withdrawn answer gives way to the refusal, with a
    line saying why, since the user has just watched it being written."""
    if not finished.withdrawn:
        return streamed.strip()
    why = finished.withdrawn["reason"]
    return f"{finished.final_answer(streamed)}\n\n*(The model's answer was withdrawn: it {why}.)*"


def build_ui(settings: Settings, knowledge: KnowledgeBaseService, chat: ChatService) -> gr.Blocks:
    def kb_choices() -> list[str]:
        try:
            return knowledge.knowledge_base_names()
        except StoreError:
            return []

    def document_rows(kb: str | None) -> list[list[Any]]:
        if not kb:
            return []
        try:
            return [[doc["source"], doc["chunks"], doc["origin"]] for doc in knowledge.list_documents(kb)]
        except StoreError:
            return []

    def documents_update(kb: str | None) -> tuple[Any, Any]:
        rows = document_rows(kb)
        names = [row[0] for row in rows]
        table = gr.update(value=rows)
        return table, gr.update(choices=names, value=names[0] if names else None)

    def refresh(kb: str | None) -> tuple[Any, Any, Any]:
        names = kb_choices()
        current = kb if kb in names else (settings.default_kb if settings.default_kb in names else None)
        current = current or (names[0] if names else None)
        table, doc_choice = documents_update(current)
        return gr.update(choices=names, value=current), table, doc_choice

    async def respond(
        question: str, history: list[dict[str, Any]], kb: str | None, top_k: float, temperature: float
    ) -> AsyncIterator[tuple[Any, str, str]]:
        question = (question or "").strip()
        if not question:
            yield history, gr.skip(), ""
            return
        previous = [(message["role"], _text(message["content"])) for message in history]
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        if not kb:
            history[-1]["content"] = (
                "**Error:** No knowledge base yet: create one and upload documents first."
            )
            yield history, _NO_SOURCES, ""
            return
        yield history, "*Searching the knowledge base…*", ""
        params = ChatParams(temperature=float(temperature), top_k=int(top_k))
        answer = ""
        try:
            async for event in chat.stream(kb, [*previous, ("user", question)], params):
                if isinstance(event, SourcesFound):
                    yield history, format_sources(event.sources), ""
                elif isinstance(event, AnswerDelta):
                    answer += event.text
                    history[-1]["content"] = answer
                    yield history, gr.skip(), ""
                elif isinstance(event, TurnFinished):
                    history[-1]["content"] = shown_answer(answer, event)
                    yield history, format_sources(event.sources, event.citations), ""
        except (LLMUnavailableError, LLMRequestError, StoreError, ValueError) as error:
            history[-1]["content"] = f"**Error:** {error}"
            yield history, gr.skip(), ""

    def upload(kb: str | None, paths: list[str] | None) -> Iterator[tuple[Any, Any, Any, Any]]:
        if not paths:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        if not kb:
            yield "**Error:** Choose or create a knowledge base first.", gr.skip(), gr.skip(), None
            return
        try:
            with ExitStack() as stack:
                opened = [(Path(path).name, stack.enter_context(Path(path).open("rb"))) for path in paths]
                job = knowledge.upload(kb, opened)
        except (UploadError, StoreError) as error:
            yield f"**Error:** {error}", gr.skip(), gr.skip(), None
            return
        while not job.finished:
            total = len(job.files)
            yield f"Ingesting {job.done}/{total} file(s)… {job.current or ''}", gr.skip(), gr.skip(), None
            knowledge.jobs.wait(job.id, timeout_s=0.5)
        if job.status == "succeeded":
            summary = job.summary or {}
            failed = summary.get("failed") or []
            status = f"Ingested {len(job.files)} file(s): {summary.get('chunks_written', 0)} chunks written."
            status += "".join(f"\n\n**Error:** {item['source']}: {item['reason']}" for item in failed)
        else:
            status = f"**Error:** Ingestion failed: {job.error}"
        table, doc_choice = documents_update(kb)
        yield status, table, doc_choice, None

    def delete_document(kb: str | None, source: str | None) -> tuple[str, Any, Any]:
        if not kb or not source:
            return "**Error:** Pick a document to delete first.", gr.skip(), gr.skip()
        try:
            chunks = knowledge.delete_document(kb, source)
            status = f"Deleted {source} ({chunks} chunks)."
        except StoreError as error:
            status = f"**Error:** {error}"
        table, doc_choice = documents_update(kb)
        return status, table, doc_choice

    def create_kb(name: str) -> tuple[str, Any, Any, Any]:
        try:
            knowledge.create_knowledge_base((name or "").strip())
        except (StoreError, ValueError) as error:
            return f"**Error:** {error}", gr.skip(), gr.skip(), gr.skip()
        return (f"Created knowledge base '{name.strip()}'.", *refresh(name.strip()))

    def delete_kb(kb: str | None) -> tuple[str, Any, Any, Any]:
        if not kb:
            return "**Error:** No knowledge base selected.", gr.skip(), gr.skip(), gr.skip()
        try:
            knowledge.delete_knowledge_base(kb)
        except StoreError as error:
            return f"**Error:** {error}", gr.skip(), gr.skip(), gr.skip()
        return (f"Deleted knowledge base '{kb}'.", *refresh(None))

    file_types = sorted(LOADERS)
    with gr.Blocks(title="kbqa") as ui:
        gr.Markdown(
            "## kbqa — ask your documents\n"
            "Answers come only from the selected knowledge base, with citations."
        )
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=460, elem_id="chat")
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask a question about your documents…",
                        show_label=False,
                        scale=5,
                        elem_id="question",
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                new_chat = gr.Button("New conversation", size="sm", elem_id="new-chat")
                with gr.Accordion("Sources", open=True):
                    sources = gr.Markdown(_NO_SOURCES, elem_id="sources")
            with gr.Column(scale=2):
                kb = gr.Dropdown(label="Knowledge base", choices=[], elem_id="kb")
                top_k = gr.Slider(
                    1, 10, value=settings.top_k, step=1, label="Passages (top-k)", elem_id="top-k"
                )
                temperature = gr.Slider(
                    0.0,
                    2.0,
                    value=settings.llm_temperature,
                    step=0.05,
                    label="Temperature",
                    elem_id="temperature",
                )
                with gr.Accordion("Documents", open=True):
                    documents = gr.Dataframe(
                        headers=_DOCUMENT_HEADERS,
                        interactive=False,
                        elem_id="documents",
                        wrap=True,
                        column_widths=["70%", "12%", "18%"],
                    )
                    files = gr.File(
                        label="Upload documents",
                        file_count="multiple",
                        file_types=file_types,
                        elem_id="upload",
                    )
                    status = gr.Markdown(elem_id="status")
                    with gr.Row():
                        document = gr.Dropdown(label="Document", choices=[], scale=3, elem_id="document")
                        delete_doc = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-document")
                with gr.Accordion("Knowledge bases", open=False):
                    new_kb = gr.Textbox(
                        label="New knowledge base", placeholder="e.g. handbook", elem_id="new-kb"
                    )
                    create = gr.Button("Create", elem_id="create-kb")
                    remove_kb = gr.Button(
                        "Delete the selected knowledge base", variant="stop", elem_id="delete-kb"
                    )

        chat_inputs = [question, chatbot, kb, top_k, temperature]
        chat_outputs = [chatbot, sources, question]
        send.click(respond, chat_inputs, chat_outputs)
        question.submit(respond, chat_inputs, chat_outputs)
        new_chat.click(lambda: ([], _NO_SOURCES), None, [chatbot, sources])
        kb.change(
            lambda name: (*documents_update(name), [], _NO_SOURCES),
            kb,
            [documents, document, chatbot, sources],
        )
        files.upload(upload, [kb, files], [status, documents, document, files])
        delete_doc.click(delete_document, [kb, document], [status, documents, document])
        create.click(create_kb, new_kb, [status, kb, documents, document])
        remove_kb.click(
            delete_kb,
            kb,
            [status, kb, documents, document],
            js="(kb) => confirm(`Delete '${kb}' and all its documents?`) ? kb : null",
        )
        ui.load(refresh, kb, [kb, documents, document])
    return ui
