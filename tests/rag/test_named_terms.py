"""``rag.named_terms``: the terms a question names that its passages must mention."""

from __future__ import annotations

from rag.named_terms import mentions, named_terms, unmentioned_term


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


def test_versions_are_named_terms_where_the_question_calls_them_versions() -> None:
    assert named_terms("星帆 3.2.0 版本新增了哪个通知渠道？") == ["3.2.0"]
    assert named_terms("星帆 5.0 版本什么时候发布？") == ["5.0"]
    assert named_terms("还是 3.1，想升级到 4.1，要先装哪个版本？") == ["4.1"]
    assert named_terms("Does v4.2 support SSO?") == ["SSO", "4.2"]
    assert named_terms("What changed in version 4.3?") == ["4.3"]
    assert named_terms("出差 3.5 天的补贴怎么算？") == []  # the asker's own figure


def test_a_version_is_mentioned_by_its_patch_releases_only() -> None:
    assert mentions("升级到 4.1.0 后", "4.1")
    assert mentions("StarSail v4.1 adds", "4.1")
    assert not mentions("版本 14.1", "4.1")
    assert not mentions("版本 4.10", "4.1")


def test_common_words_jieba_tags_as_places_are_not_named_terms() -> None:
    assert named_terms("要买一批东西，得找几家供应商报价？") == []


def test_a_place_is_accounted_for_by_a_category_row() -> None:
    question = "去成都出差，每晚住宿能报多少？"
    assert unmentioned_term(question, "| 北京、上海 | 600 元 |") == "成都"
    assert unmentioned_term(question, "| 其他省会城市及计划单列市 | 480 元 |") is None
    assert unmentioned_term(question, "| Tier C | All other cities | USD 150 |") is None
    # A category does not stand for a product version or a code.
    assert unmentioned_term("星语 API v3 在其他城市能用吗？", "其他城市均可使用 API v2") == "v3"


def test_an_english_name_is_missing_only_when_its_translation_is_missing_too() -> None:
    question = "What is the shuttle bus schedule for the Shanghai office?"
    passages = "杭州总部开行两条免费班车线路 H1、H2。"
    assert unmentioned_term(question, passages, "上海办公室的班车时刻表是什么？") == "Shanghai"
    # Chinese passages write Hangzhou as 杭州; a translation naming no place proves nothing.
    assert unmentioned_term("When does the Hangzhou shuttle leave?", passages, "杭州班车几点发车？") is None
    assert unmentioned_term(question, passages, "shuttle bus 的时刻表") is None
    assert unmentioned_term(question, passages) is None


def test_an_english_acronym_the_translation_translates_is_a_word() -> None:
    question = "How much does StarSail charge for each alert SMS beyond the free quota?"
    passages = "超出免费额度的告警短信按每条 0.05 元收费。"
    assert unmentioned_term(question, passages) == "SMS"
    assert unmentioned_term(question, passages, "超出免费额度后，星帆每条告警 SMS 收费多少？") == "SMS"
    assert unmentioned_term(question, passages, "超出免费额度后，星帆每条告警短信收费多少？") is None
    ssml = "Which SSML tags does StarVoice support?"
    assert unmentioned_term(ssml, "星语支持多种发音人。", "星语支持哪些 SSML 标签？") == "SSML"


def test_mentions_ignore_case_and_hyphens_but_not_token_boundaries() -> None:
    assert mentions("Working from public WiFi is forbidden.", "Wi-Fi")
    assert mentions("开放接口升级到 v3，v2 继续可用", "V3")
    assert not mentions("SEV3: malware on a single laptop", "V3")
    assert mentions("北京、上海、广州", "北京")


def test_capitals_english_writes_as_words_are_not_named_terms() -> None:
    for question in (
        "Is it OK to bring my dog on Fridays?",
        "Who do I tell ASAP if my laptop is stolen?",
        "Is the office open at 8 AM?",
        "What does the FAQ say about parking?",
    ):
        assert unmentioned_term(question, "Dogs are welcome on Fridays. The office opens at 8:00.") is None
    assert unmentioned_term("Does the VPN need MFA?", "The VPN needs a token.") == "MFA"


def test_a_term_written_without_its_hyphen_is_mentioned() -> None:
    assert mentions("Guest Wi-Fi is on the second floor.", "WIFI")
    assert unmentioned_term("Does the WIFI require the VPN?", "The Wi-Fi does not require the VPN.") is None


def test_over_english_passages_an_english_name_must_be_written_as_asked() -> None:
    """No translation is asked for an English knowledge base; its passages write names in English."""
    hotels = "Hotel limits per night: Paris 200 EUR, Berlin 180 EUR. Dogs are welcome on Fridays."
    question = "What is the hotel limit in London?"
    assert unmentioned_term(question, hotels, english_passages=True) == "London"
    assert unmentioned_term(question, hotels) is None  # Chinese passages may write it 伦敦
    assert unmentioned_term("What is the hotel limit in Paris?", hotels, english_passages=True) is None
    assert unmentioned_term("Can I bring my dog on Friday?", hotels, english_passages=True) is None
    assert unmentioned_term("Is the office open in December?", hotels, english_passages=True) is None
    covered = hotels + " All other cities: 150 EUR."
    assert unmentioned_term(question, covered, english_passages=True) is None


def test_english_names_a_question_may_name_without_being_unanswerable() -> None:
    passages = (
        "Connect to the office WiFi with your badge number. Outlook is the mail client. "
        "Travel expenses need receipts. The office opens at 8:00."
    )
    for question in (
        "How do I connect to the office Wi-Fi?",  # a compound: a term, found as WiFi
        "Can I come in at 8AM?",  # a time, not a code
        "How do I reset my password in Outlook, Teams or Zoom?",  # one of them is written
        "Is the office open at Christmas?",  # a holiday, not a name
        "Where is the Travel Policy?",  # title case: one of its words is written
    ):
        assert unmentioned_term(question, passages, english_passages=True) is None, question
