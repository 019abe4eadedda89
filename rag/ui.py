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
from chromadb.errors import NotFoundError as ChromaNotFoundError

from ingest.loaders import LOADERS
from rag.chat import AnswerDelta, ChatParams, ChatService, SourcesFound, TurnFinished
from rag.config import Settings
from rag.llm import LLMRequestError, LLMUnavailableError
from rag.prompts import counted, format_location
from rag.service import KnowledgeBaseService, UploadError
from rag.store import StoreError

_NO_SOURCES = "*No passages cited yet.*"
_NO_ANSWER = "*No answer: see the error in the chat.*"
_ERROR = "**Error:** "
_WITHDRAWN_NOTE = "\n\n*(The model's answer was withdrawn: it "
_DOCUMENT_HEADERS = ["document", "chunks", "origin"]


def conversation(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The chat so far as the model should see it: a turn that ended in an error is left out (an
    over-long message must not fail every later one), and a withdrawn answer is its refusal only."""
    turns: list[tuple[str, str]] = []
    for message in history:
        text = _text(message["content"])
        if message["role"] == "assistant" and text.startswith(_ERROR):
            if turns and turns[-1][0] == "user":
                turns.pop()
            continue
        turns.append((message["role"], text.split(_WITHDRAWN_NOTE, 1)[0]))
    return turns


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
        where = format_location(source["source"], source["page"], source.get("section"))
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
    return f"{finished.final_answer(streamed)}{_WITHDRAWN_NOTE}{why}.)*"


def shown_sources(finished: TurnFinished) -> str:
    """The sources panel once the turn is over. A withdrawn answer's citations are not shown: the
    chat no longer holds the text they were checked on, so "unsupported [1]" would point at nothing.
    Nor are passages the model itself found no answer in presented as the answer's sources, and a
    greeting's reply, for which nothing was searched, says nothing about the knowledge base."""
    if finished.small_talk:
        return ""
    if finished.withdrawn:
        note = "*The answer was withdrawn: these passages were searched, and none answers the question.*"
    elif finished.refused:
        note = "*These passages were searched; the model found no answer in them.*"
    else:
        return format_sources(finished.sources, finished.citations)
    searched = format_sources(finished.sources) if finished.sources else ""
    return f"{note}\n\n{searched}" if searched else format_sources([])


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

    def documents_update(kb: str | None, selected: str | None = None) -> tuple[Any, Any]:
        """The documents table and picker; nothing is picked unless ``selected`` names a document, so
        a delete never lands on a document the user did not choose."""
        rows = document_rows(kb)
        names = [row[0] for row in rows]
        table = gr.update(value=rows)
        return table, gr.update(choices=names, value=selected if selected in names else None)

    def refresh(kb: str | None) -> tuple[Any, Any, Any]:
        names = kb_choices()
        current = kb if kb in names else (settings.default_kb if settings.default_kb in names else None)
        current = current or (names[0] if names else None)
        table, doc_choice = documents_update(current)
        return gr.update(choices=names, value=current), table, doc_choice

    async def respond(
        question: str, history: list[dict[str, Any]], kb: str | None, top_k: float, temperature: float
    ) -> AsyncIterator[tuple[Any, str, str]]:
        # The question box is emptied once, when the question is taken: what the user types while
        # the answer streams is the next question and stays.
        question = (question or "").strip()
        if not question:
            yield history, gr.skip(), gr.skip()
            return
        previous = conversation(history)
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        if not kb:
            history[-1]["content"] = f"{_ERROR}No knowledge base yet: create one and upload documents first."
            yield history, _NO_SOURCES, ""
            return
        yield history, "*Searching the knowledge base…*", ""
        params = ChatParams(temperature=float(temperature), top_k=int(top_k))
        answer = ""
        try:
            async for event in chat.stream(kb, [*previous, ("user", question)], params):
                if isinstance(event, SourcesFound):
                    yield history, format_sources(event.sources), gr.skip()
                elif isinstance(event, AnswerDelta):
                    answer += event.text
                    history[-1]["content"] = answer
                    yield history, gr.skip(), gr.skip()
                elif isinstance(event, TurnFinished):
                    history[-1]["content"] = shown_answer(answer, event)
                    yield history, shown_sources(event), gr.skip()
        except (LLMUnavailableError, LLMRequestError, StoreError, ValueError) as error:
            history[-1]["content"] = f"{_ERROR}{error}"
            yield history, _NO_ANSWER, gr.skip()
        except ChromaNotFoundError:  # deleted (by another tab, the API, the CLI) while this question ran
            history[-1]["content"] = f"{_ERROR}The knowledge base '{kb}' was deleted: choose another one."
            yield history, _NO_ANSWER, gr.skip()

    def upload(kb: str | None, paths: list[str] | None) -> Iterator[tuple[Any, Any, Any]]:
        """Yields (status, uploaded document to pick, file widget)."""
        if not paths:
            yield gr.skip(), None, gr.skip()
            return
        if not kb:
            yield f"{_ERROR}Choose or create a knowledge base first.", None, None
            return
        try:
            with ExitStack() as stack:
                opened = [(Path(path).name, stack.enter_context(Path(path).open("rb"))) for path in paths]
                job = knowledge.upload(kb, opened)
        except (UploadError, StoreError) as error:
            yield f"{_ERROR}{error}", None, None
            return
        while not job.finished:
            total = len(job.files)
            if job.waiting:  # another writer (a CLI ingestion) holds the knowledge base
                step = job.waiting
            elif job.status == "queued":
                step = "waiting for its turn"
            else:
                step = f"reading and indexing {job.current or 'the files'}"
                if job.chunks_embedded:
                    step += f" ({counted(job.chunks_embedded, 'chunk')} embedded so far)"
            yield f"Ingesting into '{kb}': {job.done} of {counted(total, 'file')} done; {step}…", None, None
            knowledge.jobs.wait(job.id, timeout_s=0.5)
        kept = None
        if job.status == "succeeded":
            summary = job.summary or {}
            failed = summary.get("failed") or []
            bad = {item["source"] for item in failed}
            good = [name for name in job.files if name not in bad]
            kept = good[0] if good else None
            written = counted(summary.get("chunks_written", 0), "chunk")
            status = (
                f"Ingested {counted(len(good), 'file')}: {written} written."
                if good
                else "Nothing was ingested."
            )
            status += "".join(f"\n\n{_ERROR}{item['source']}: {item['reason']}" for item in failed)
        else:
            status = f"{_ERROR}Ingestion failed: {job.error}"
        # The table is redrawn by the step after this one, for the knowledge base selected when the
        # upload ends (which need not be the one it went into); the picker shows what was uploaded.
        yield status, kept, None

    def delete_document(kb: str | None, source: str | None) -> tuple[str, Any, Any]:
        if not kb or not source:  # none picked (the page said so), or the user said no to the confirm
            return gr.skip(), gr.skip(), gr.skip()
        try:
            chunks = knowledge.delete_document(kb, source)
            status = f"Deleted {source} ({counted(chunks, 'chunk')})."
        except StoreError as error:
            status = f"{_ERROR}{error}"
        table, doc_choice = documents_update(kb)
        return status, table, doc_choice

    def create_kb(name: str) -> tuple[Any, ...]:
        try:
            knowledge.create_knowledge_base((name or "").strip())
        except (StoreError, ValueError) as error:
            return f"{_ERROR}{error}", gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (f"Created knowledge base '{name.strip()}'.", *refresh(name.strip()), "")

    def delete_kb(kb: str | None) -> tuple[str, Any, Any, Any]:
        if not kb:  # none selected (the page said so), or the user said no to the confirm
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            knowledge.delete_knowledge_base(kb)
        except StoreError as error:
            return f"{_ERROR}{error}", gr.skip(), gr.skip(), gr.skip()
        return (f"Deleted knowledge base '{kb}'.", *refresh(None))

    def kb_list(kb: str | None) -> Any:
        """The knowledge-base picker's choices, fresh (another tab or the API may have made one)."""
        names = kb_choices()
        return gr.update(choices=names) if kb is None or kb in names else gr.update(choices=names, value=None)

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
                        column_widths=["62%", "18%", "20%"],
                    )
                    files = gr.File(
                        label="Upload documents",
                        file_count="multiple",
                        file_types=file_types,
                        elem_id="upload",
                    )
                    status = gr.Markdown(elem_id="status")
                    uploaded = gr.State(None)  # the document an upload added, to pick once listed
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
                    kb_status = gr.Markdown(elem_id="kb-status")  # beside the buttons it reports on

        chat_inputs = [question, chatbot, kb, top_k, temperature]
        chat_outputs = [chatbot, sources, question]
        # Each browser tab streams its own answer (the LLM server batches them): the default of one
        # run of an event at a time made a second tab wait for the first one's whole answer.
        asking = [
            send.click(respond, chat_inputs, chat_outputs, concurrency_limit=None),
            question.submit(respond, chat_inputs, chat_outputs, concurrency_limit=None),
        ]
        # A new conversation or another knowledge base stops the answer being streamed, which
        # would otherwise go on writing the old conversation into the new one.
        new_chat.click(lambda: ([], _NO_SOURCES), None, [chatbot, sources], cancels=asking)
        kb.change(
            lambda name: (*documents_update(name), [], _NO_SOURCES, ""),
            kb,
            [documents, document, chatbot, sources, status],
            cancels=asking,
        )
        kb.focus(kb_list, kb, kb)
        files.upload(upload, [kb, files], [status, uploaded, files]).then(
            documents_update, [kb, uploaded], [documents, document]
        )
        # The dialogs run in the page; a refusal or a missing choice reaches Python as None.
        delete_doc.click(
            delete_document,
            [kb, document],
            [status, documents, document],
            js="(kb, doc) => [kb, doc ? (confirm(`Delete '${doc}'?`) ? doc : null)"
            " : (alert('Pick a document to delete first.'), null)]",
        )
        create.click(create_kb, new_kb, [kb_status, kb, documents, document, new_kb])
        remove_kb.click(
            delete_kb,
            kb,
            [kb_status, kb, documents, document],
            js="(kb) => kb ? (confirm(`Delete '${kb}' and all its documents?`"
            f" + (kb === {settings.default_kb!r} ? ' It is the default one (API model kbqa).' : ''))"
            " ? kb : null) : (alert('No knowledge base selected.'), null)",
        )
        ui.load(refresh, kb, [kb, documents, document])
    return ui
