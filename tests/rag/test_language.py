import pytest

from rag.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("kbqa 默认把文档切成多少个字符的块？", "zh"),
        ("RAG 是什么？", "zh"),
        ("什麼是檢索增強生成", "zh"),
        ("What is the phone extension of the IT helpdesk?", "en"),
        ("How does kbqa handle 中文 documents and English ones together?", "en"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language
