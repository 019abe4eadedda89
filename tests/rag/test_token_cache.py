"""The keyword token cache: what a rebuild tokenized once is never segmented again."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag import keyword_index
from rag.keyword_index import KeywordIndex, keyword_folder
from rag.token_cache import TokenCache, text_hash


def test_cache_stores_looks_up_and_prunes(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "kb.tokens.sqlite", 3)
    assert not cache.path.exists()  # made on first use only
    a, b, empty = text_hash("会议室"), text_hash("shuttle bus"), text_hash("")
    cache.store([(a, ["会议", "会议室"]), (b, ["shuttle", "bus"]), (empty, [])])
    assert cache.lookup([a, b, empty, text_hash("unknown")]) == {
        a: ["会议", "会议室"],
        b: ["shuttle", "bus"],
        empty: [],
    }
    cache.keep_only([b])
    assert cache.lookup([a, b, empty]) == {b: ["shuttle", "bus"]}
    cache.delete()
    assert not cache.path.exists()


def test_another_tokenizer_versions_tokens_are_dropped(tmp_path: Path) -> None:
    """Keyed by the text, an entry of an older tokenizer would be taken for the new one's tokens."""
    old = TokenCache(tmp_path / "kb.tokens.sqlite", 2)
    key = text_hash("leaves")
    old.store([(key, ["leaves"])])
    new = TokenCache(tmp_path / "kb.tokens.sqlite", 3)
    assert new.lookup([key]) == {}
    new.store([(key, ["leave"])])
    assert TokenCache(tmp_path / "kb.tokens.sqlite", 3).lookup([key]) == {key: ["leave"]}
    assert TokenCache(tmp_path / "kb.tokens.sqlite", 2).lookup([key]) == {}


def test_rebuild_tokenizes_only_new_text(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "rooms.md").write_text("观澜会议室在九楼，可容纳二十人。", encoding="utf-8")
    (folder / "bus.txt").write_text("The Q1 shuttle bus has 33 seats.", encoding="utf-8")
    ingestor.ingest_folder(folder, "tokens", progress=False)
    index = KeywordIndex(
        keyword_folder(ingestor.settings.data_dir, "tokens"), ingestor.client.get_collection("tokens")
    )
    before = {query: index.search(query, 3) for query in ("观澜会议室", "Q1 seats")}

    tokenized: list[str] = []
    real = keyword_index.tokenize
    monkeypatch.setattr(keyword_index, "tokenize", lambda text: tokenized.append(text) or real(text))
    assert index.rebuild() == 2
    assert tokenized == []  # both texts came from the cache
    assert {query: index.search(query, 3) for query in before} == before
    tokenized.clear()  # the queries themselves

    (folder / "canteen.txt").write_text("The canteen opens at 11:30.", encoding="utf-8")
    (folder / "bus.txt").unlink()
    ingestor.ingest_folder(folder, "tokens", progress=False)
    assert tokenized == ["The canteen opens at 11:30."]  # only the new chunk met jieba
    assert index.tokens.lookup([keyword_index.text_hash("The Q1 shuttle bus has 33 seats.")]) == {}
