"""Withdrawing answers that answer nothing (rag.answer_check), on answers the packaged 0.5B gave."""

from __future__ import annotations

import pytest

from rag.answer_check import (
    COPIES_EXAMPLE,
    HEADING_PATH,
    INVENTED_NUMBER,
    RESTATES_QUESTION,
    check_answer,
    reads_as_refusal,
    withdrawal_reason,
)
from rag.config import PROJECT_ROOT
from rag.prompts import example_texts

MOWER = "Members may borrow the club's lawn mower for up to three days at a time."
SHIPPED_EN = example_texts(PROJECT_ROOT / "prompts", "en")


def _source(text: str, section: str | None = None) -> dict[str, object]:
    return {"index": 1, "source": "a.md", "section": section, "text": text}


PROCUREMENT = _source("采购流程 > 审批\n采购金额超过五万元须经财务总监审批。", "采购流程 > 审批")


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("采购部负责人叫什么名字？", "采购部负责人叫 [1]。"),  # the marker where the name should be
        ("年终奖一般在几月份发放？", "根据资料，年终奖一般在 [1] 月份发放。"),
        (
            "工作用的设备放着没人碰，多长时间后会自动锁定画面？",
            "根据资料，工作用的设备放着没人碰，多长时间后会自动锁定画面。",
        ),
        ("On the support hotline, which key do I press for billing?", "[1]."),
        ("What is the per-second request limit?", "Based on the context, the per-second request limit [2]."),
        # the question given back word for word, though it has no question word
        (
            "https://api.starvoice.example.com/v2/asr?lang=zh",
            "https://api.starvoice.example.com/v2/asr?lang=zh [1].",
        ),
        ("采购审批", "采购审批。"),
        ("Is the canteen open on Sundays?", "Is the canteen open on Sundays?"),  # itself a question
        ("食堂周日开门吗？", "食堂周日开门吗？"),
        ("VPN地址？", "VPN地址 [1]"),  # states nothing to confirm
        ("OA 系统？", "OA 系统"),
    ],
)
def test_an_answer_that_only_restates_the_question_is_withdrawn(question: str, answer: str) -> None:
    assert withdrawal_reason(answer, questions=[question], sources=[PROCUREMENT]) == RESTATES_QUESTION


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("采购金额超过多少须经财务总监审批？", "五万元 [1]。"),
        ("采购金额超过多少须经财务总监审批？", "根据资料，采购金额超过五万元须经财务总监审批 [1]。"),
        ("Who must approve a purchase over 50,000 yuan?", "The finance director [1]."),
        ("可以带宠物进办公室吗？", "可以。"),  # a yes/no question: repeating its verb answers it
        ("Is the canteen open on Sundays?", "Yes, the canteen is open on Sundays [1]."),
        ("年终奖一般在几月份发放？", "知识库中没有找到相关信息。"),  # a refusal is no restatement
        ("年假是5天？", "年假是5天 [1]。"),  # a confirmation in the question's own words
        ("The bus leaves at 8:05?", "The bus leaves at 8:05 [1]."),
    ],
)
def test_real_answers_stand(question: str, answer: str) -> None:
    assert withdrawal_reason(answer, questions=[question], sources=[PROCUREMENT]) is None


def test_a_follow_up_is_judged_against_the_standalone_query_too() -> None:
    questions = ["那它几点发车？", "公司班车几点发车？"]  # as asked, and as condensed
    assert withdrawal_reason("公司班车 [1] 发车。", questions=questions, sources=[]) == RESTATES_QUESTION


def test_a_heading_path_given_as_the_answer_is_withdrawn() -> None:
    release = _source(
        "星帆监控平台发布说明 > 升级说明\n从 3.x 升级到 4.x …", "星帆监控平台发布说明 > 升级说明"
    )
    question = "星帆私有化部署版本的授权费用是多少？"
    for answer in ("星帆监控平台发布说明 > 升级说明", "星帆监控平台发布说明 > 升级说明 [1]。"):
        assert withdrawal_reason(answer, questions=[question], sources=[release]) == HEADING_PATH


@pytest.mark.parametrize(
    "answer", ["Up to three days at a time [1].", "On the first Monday of each month [1]."]
)
def test_a_copy_of_a_shipped_worked_example_is_withdrawn(answer: str) -> None:
    """Both were answers of the packaged 0.5B to held-out questions whose passages lacked the answer."""
    sources = [_source("Travel requests must be filed in the portal before booking.")]
    reason = withdrawal_reason(
        answer, questions=["How long may a laptop be borrowed?"], sources=sources, examples=SHIPPED_EN
    )
    assert reason == COPIES_EXAMPLE


def test_an_answer_its_own_passage_backs_stands_even_when_an_example_says_the_same() -> None:
    sources = [_source("Projectors may be borrowed for up to three days at a time.")]
    answer = "Up to three days at a time [1]."
    question = ["How long may a projector be borrowed?"]
    assert withdrawal_reason(answer, questions=question, sources=sources, examples=SHIPPED_EN) is None
    refusal = "Not in the knowledge base; it does not contain this information."  # an example's answer
    assert withdrawal_reason(refusal, questions=question, sources=sources, examples=SHIPPED_EN) is None


def test_check_answer_replaces_with_the_refusal() -> None:
    withdrawal = check_answer(
        " 采购部负责人叫 [1]。", "知识库中没有找到相关内容。", questions=["采购部负责人叫什么？"], sources=[]
    )
    assert withdrawal is not None
    assert withdrawal.as_dict() == {
        "reason": RESTATES_QUESTION,
        "original": "采购部负责人叫 [1]。",
        "replacement": "知识库中没有找到相关内容。",
    }
    assert check_answer("", "refusal", questions=["什么？"], sources=[]) is None


def test_a_choice_question_may_be_answered_with_its_own_words() -> None:
    for question, answer in [
        ("Which office has the gym, Hangzhou or Chengdu?", "Hangzhou [1]."),
        ("健身房在杭州还是成都？哪个？", "杭州 [1]。"),
    ]:
        assert withdrawal_reason(answer, questions=[question], sources=[]) is None


def test_a_number_that_no_passage_holds_is_withdrawn() -> None:
    """The 0.5B's answer to a held-out question the documents do not answer."""
    sources = [_source("星帆移动端 App 支持 iOS 与 Android，可接收告警推送。")]
    answer = "星帆的手机 App 最低支持 iOS 版本 13.0。"
    reason = withdrawal_reason(answer, questions=["星帆的手机 App 最低支持哪个 iOS 版本？"], sources=sources)
    assert reason == INVENTED_NUMBER


def test_a_time_of_day_no_passage_holds_is_withdrawn() -> None:
    sources = [_source("The helpdesk is reachable between 10:00 and 15:00.")]
    reason = withdrawal_reason(
        "It closes at 4 p.m. [1].", questions=["When does the helpdesk close?"], sources=sources
    )
    assert reason == INVENTED_NUMBER


@pytest.mark.parametrize(
    ("passage", "answer"),
    [
        ("员工每年享有十五天带薪年假。", "15 days [1]."),  # Chinese numerals
        ("报销须在三千二百元以内。", "3,200 元 [1]。"),
        ("Members may keep the mower for three days.", "3 days [1]."),  # English number words
        ("The hotline is 400-820-1234.", "Call 400-820-1234 [1]."),
        ("年假可顺延至次年 3 月 31 日。", "2025-03-31 前，顺延至次年 3 月 31 日 [1]。"),  # 2025 is asked
        ("The fee is CNY 1,500.0 per year.", "CNY 1500 [1]."),
        ("The helpdesk is reachable between 10:00 and 15:00.", "Between 10 a.m. and 3 p.m. [1]."),
        ("The desk opens at 3 pm.", "It opens at 15:00 [1]."),
        ("班车 18:30 发车。", "下午6点半发车 [1]。"),
        ("Parking is free for the first two hours.", "Free for the 1st 2 hours [1]."),
        ("Claims above $1,200 need approval.", "Claims above $1.2k [1]."),
    ],
)
def test_a_number_the_passages_or_the_question_hold_stands(passage: str, answer: str) -> None:
    questions = ["How long, and until when in 2025?"]
    assert withdrawal_reason(answer, questions=questions, sources=[_source(passage)]) is None


def test_a_traditional_script_answer_is_judged_as_its_simplified_form() -> None:
    """The question words and numerals the checks know are Simplified; a Traditional-script question
    is answered in Traditional script (rag.chain), so both are folded before judging."""
    sources = [{"index": 1, "text": "採購金額超過一萬元的，須經部門負責人審批。"}]
    restated = withdrawal_reason(
        "員工每年有年假 [1]。", questions=["員工每年有幾天年假？"] * 2, sources=sources
    )
    assert restated == RESTATES_QUESTION
    number = withdrawal_reason("超過 10000 元須審批 [1]。", questions=["多少錢要審批？"] * 2, sources=sources)
    assert number is None  # 一萬 is 10000, as 一万 is


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("知识库中没有找到相关信息。", True),
        ("知識庫中沒有找到相關信息。", True),  # Traditional script, as a Traditional question gets it
        ("Not in the knowledge base; it does not contain this information.", True),
        ("“知识库中没有找到相关信息。”", True),  # quoted, as the Chinese prompt shows it
        ("抱歉，知识库中没有找到相关信息。", True),
        ("**Not in the knowledge base.**", True),
        ("知识库中没有找到相关信息 [1]。", True),
        ("知识库中没有2024年的数据，但2023年的年假是5天 [1]。", False),  # answers in part
        ("知识库中没有2024年的数据，但2023年的年假是5天。", False),
        ("The 2024 rates are not in the knowledge base, but the 2023 rate is 5% [1].", False),
        ("The shuttle bus has 33 seats [1].", False),
        # a larger model's own wording
        ("I'm sorry, but the documents don't say.", True),
        ("The context does not mention the stock price.", True),
        ("There is no information about that in the provided context.", True),
        ("The provided passages do not specify the hotel limit in London.", True),
        ("提供的资料中没有提到股票期权。", True),
        ("资料中未提及该信息。", True),
        ("The context does not mention 2024, but the 2023 rate is 5% [1].", False),
        ("There is no parking fee for staff [1].", False),  # "no" answers, it does not refuse
        ("There is no data retention limit [1].", False),
        ("无法从外网直接访问OA，需先连接VPN [1]。", False),
        ("No information is provided to third parties [1].", False),
        ("Documents do not have to be notarised [1].", False),
        ("The information does not include your salary [1].", False),
        ("没有找到相关记录时，系统会自动创建 [1]。", False),
        ("无法根据提供的资料回答这个问题。", True),
        ("没有找到相关信息。", True),
        ("There is no relevant information.", True),
        ("资料显示班车有33个座位 [1]。", False),
    ],
)
def test_the_models_own_refusal_is_told_from_answers(answer: str, refused: bool) -> None:
    assert reads_as_refusal(answer) is refused
