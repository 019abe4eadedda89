"""Chinese text folded to one script and one width wherever kbqa matches it, and answers written back
in the asker's script."""

from __future__ import annotations

import threading

from rag.chinese_text import TraditionalStream, fold, script_of, to_simplified, to_traditional
from rag.citations import check_citations
from rag.evaluation import answer_is_correct
from rag.keyword_index import tokenize
from rag.named_terms import unmentioned_term


def test_traditional_is_folded_to_simplified_by_phrase() -> None:
    assert to_simplified("員工請假須經主管核准，颱風停班依政府公告辦理。") == (
        "员工请假须经主管核准，台风停班依政府公告办理。"
    )
    # one Traditional character, two Simplified ones: the phrase decides
    assert to_simplified("乾燥的倉庫") == "干燥的仓库"
    assert to_simplified("乾隆年間") == "乾隆年间"


def test_simplified_and_non_chinese_text_are_left_as_they_are() -> None:
    simplified = "员工每年享有十五天带薪年假，须在「禾苗」系统中申请。API v3 限流 100 次/秒。"
    assert to_simplified(simplified) == simplified
    english = "The Q1 shuttle bus has 33 seats."
    assert to_simplified(english) is english


def test_full_width_letters_and_digits_fold_to_ascii_and_chinese_punctuation_stays() -> None:
    assert fold("ＡＰＩ ｖ３．２ 限流１００次，Ｗｉ－Ｆｉ　密码") == "API v3.2 限流100次，Wi-Fi 密码"
    assert fold("會議室１２") == "会议室12"
    english = "plain ASCII"
    assert fold(english) is english


def test_full_width_text_is_found_by_its_ascii_form() -> None:
    """Before folding, BM25 dropped full-width letters and digits (no token at all), the named-terms
    gate refused 'API v3' over passages writing ＡＰＩ ｖ３, and rag eval missed １５天 for 15 天."""
    assert (
        tokenize("ＡＰＩ ｖ３ 限流１００次")
        == tokenize("API v3 限流100次")
        == ["api", "v3", "限流", "100", "次"]
    )
    assert unmentioned_term("API v3 的限流是多少？", "ＡＰＩ ｖ３ 限流每分钟１００次") is None
    assert answer_is_correct("年假１５天 [1]。", [["15 天", "十五天"]])


def test_folding_is_safe_from_many_threads() -> None:
    """The app folds each question on a worker thread; one converter serves them all."""
    text, expected = "會議室預約請通過系統進行。", "会议室预约请通过系统进行。"
    results: list[str] = []

    def convert() -> None:
        results.extend(to_simplified(text) for _ in range(200))

    threads = [threading.Thread(target=convert) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 1600


def test_a_place_written_in_the_other_script_is_mentioned() -> None:
    """Before folding, 广州 in the question was 'missing' from a passage writing 廣州, and the
    named-terms gate refused an answerable question."""
    passages = "廣州辦公室的班車每天早上八點從地鐵站發車。"
    assert unmentioned_term("广州办公室的班车几点发车？", passages) is None
    assert unmentioned_term("廣州辦公室的班車幾點發車？", "广州办公室的班车每天早上八点发车。") is None
    assert unmentioned_term("深圳办公室的班车几点发车？", passages) == "深圳"


def test_a_citation_of_a_traditional_passage_is_checked_by_its_words() -> None:
    sources = [{"index": 1, "text": "員工每年享有十五天帶薪年假，須在系統中申請。"}]
    [check] = check_citations("员工每年有十五天带薪年假 [1]。", sources)
    assert check.supported


def test_the_script_of_a_question() -> None:
    assert script_of("員工每年有幾天年假？") == "traditional"
    assert script_of("员工每年有几天年假？") == "simplified"
    assert script_of("年假几天") == "simplified"  # 几 is Simplified only
    assert script_of("那婚假呢？") is None  # the same in both scripts
    assert script_of("How many days of leave?") is None
    assert to_traditional("为了里面的发展") == "為了裡面的發展"  # Taiwan's standard characters


def test_a_streamed_answer_is_converted_by_phrase_across_pieces() -> None:
    """发 is 髮 in 头发 and 發 in 发展: a piece ending inside a phrase is held until the phrase ends."""
    stream = TraditionalStream()
    sent = [stream.feed(piece) for piece in ["根据", "资料，", "他的头", "发很长。", "发展", "很快 [1]。"]]
    sent.append(stream.flush())
    assert "".join(sent) == "根據資料，他的頭髮很長。發展很快 [1]。"
    assert sent[0] == "" and sent[1] == "根據資料，"  # held back, then sent at the comma


def test_a_long_run_without_punctuation_is_not_held_back_for_ever() -> None:
    stream = TraditionalStream()
    sent = stream.feed("员" * 100)
    assert len(sent) >= 100 - TraditionalStream.HOLD and stream.flush() == "員" * (100 - len(sent))
