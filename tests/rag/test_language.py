import pytest

from rag.language import detect_language, passage_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("kbqa 默认把文档切成多少个字符的块？", "zh"),
        ("RAG 是什么？", "zh"),
        ("什麼是檢索增強生成", "zh"),
        ("What is the phone extension of the IT helpdesk?", "en"),
        ("How does kbqa handle 中文 documents and English ones together?", "en"),
        # an English question quoting a Chinese term is English, and the other way round
        ("What is 调休?", "en"),
        ("What does 星河 OA mean?", "en"),
        ("Can I bring my 家属 to the 年会?", "en"),
        ("iPhone 15 Pro Max 多少钱", "zh"),
        ('"Do not reply" 是什么意思？', "zh"),
        ("星帆告警规则上限", "zh"),
        ("Is 在职证明 needed?", "en"),
        ("What's 调休?", "en"),
        ("Where’s the 食堂?", "en"),
        # keyword queries whose English is an acronym, a letter or a term, not a frame
        ("IT部门电话", "zh"),
        ("IT 支持电话", "zh"),
        ("A股代码", "zh"),
        ("On-call 轮值制度", "zh"),
        ("No.5 文件", "zh"),
        ("To B 业务介绍", "zh"),
        ("什麼是 OA 系統？", "zh"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_a_passage_is_chinese_when_han_characters_carry_it() -> None:
    """Passages keep the share rule: a Chinese API page full of English code words is Chinese."""
    assert passage_language("调用 for item in the list: 返回 is not None 的结果") == "zh"
    assert passage_language("The 年会 is held in the hall on Friday evening.") == "en"
