"""``rag.named_terms``: the terms a question names that its passages must mention."""

from __future__ import annotations

from rag.named_terms import mentions, named_terms


def test_versions_codes_acronyms_and_compounds_are_named_terms() -> None:
    assert named_terms("What is the rate limit of API v3 during a SEV1 incident?") == ["API", "v3", "SEV1"]
    assert named_terms("Is the guest Wi-Fi on 4K screens?") == ["Wi-Fi", "4K"]


def test_plain_words_and_the_askers_own_numbers_are_not() -> None:
    # Capitalised English names are written in Chinese in a Chinese document; numbers are the asker's.
    assert named_terms("What is the shuttle schedule for the Shanghai office?") == []
    assert named_terms("单笔采购金额 8 万元，至少需要几家供应商报价？") == []
    assert named_terms("How many days of leave do I get?") == []


def test_chinese_place_names_are_named_terms() -> None:
    assert named_terms("北京办公室的班车几点发车？") == ["北京"]


def test_mentions_ignore_case_and_hyphens_but_not_token_boundaries() -> None:
    assert mentions("Working from public WiFi is forbidden.", "Wi-Fi")
    assert mentions("开放接口升级到 v3，v2 继续可用", "V3")
    assert not mentions("SEV3: malware on a single laptop", "V3")
    assert mentions("北京、上海、广州", "北京")
