"""Citation check: each [n] against passage n, by the content words of the sentence citing it."""

from __future__ import annotations

from rag.citations import check_citations

SOURCES = [
    {"index": 1, "text": "The company shuttle bus has 33 seats and runs every 15 minutes."},
    {"index": 2, "text": "员工每年享有十五天带薪年假，须在系统中申请。"},
]


def _verdicts(answer: str) -> list[tuple[int, bool]]:
    return [(check.index, check.supported) for check in check_citations(answer, SOURCES)]


def test_supported_and_unsupported_citations_in_english() -> None:
    answer = "The shuttle bus has 33 seats [1]. Employees get fifteen days of paid leave [1]."
    assert _verdicts(answer) == [(1, True), (1, False)]


def test_chinese_sentences_and_a_citation_of_no_passage() -> None:
    assert _verdicts("员工每年有十五天带薪年假 [2]。班车有 33 个座位 [3]。") == [(2, True), (3, False)]


def test_several_markers_on_one_sentence_are_each_checked() -> None:
    assert _verdicts("The shuttle bus has 33 seats [1][2].") == [(1, True), (2, False)]


def test_bracketed_numbers_that_are_not_markers_and_no_markers() -> None:
    assert _verdicts("The helpdesk extension is [8021].") == []
    assert _verdicts("The bus has 33 seats.") == []


def test_a_bare_yes_or_no_is_not_judged_by_its_words() -> None:
    sources = [{"index": 1, "text": "Dogs are welcome in the office on Fridays."}]
    [yes] = check_citations("Yes [1].", sources)
    [chinese] = check_citations("不可以 [1]。", sources)
    assert yes.supported and chinese.supported
    [wrong] = check_citations("Yes, cats are welcome on Mondays [1].", sources)
    assert not wrong.supported


def test_a_period_of_an_abbreviation_ends_no_sentence() -> None:
    text = "The U.K. office in London has 40 desks; Dr. Chen runs it, e.g. its budget."
    sources = [{"index": 1, "text": text}]
    for answer in (
        "The U.K. office has 40 desks [1].",
        "Dr. Chen runs the London office [1].",
        "The office in London, e.g. its 40 desks, is run by Chen [1].",
        "The office has approx. 40 desks in London [1].",
    ):
        [check] = check_citations(answer, sources)
        assert check.supported, answer
        assert check.sentence == answer
    # a real sentence end still splits: the second sentence is judged by its own words
    assert _verdicts("The bus has 33 seats. Employees get fifteen days of paid leave [1].") == [(1, False)]
