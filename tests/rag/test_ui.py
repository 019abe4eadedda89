"""What the web UI's chat shows once a turn is over (the browser test drives the rest, in tests/e2e)."""

from __future__ import annotations

from rag.chat import TurnFinished, Usage
from rag.ui import conversation, shown_answer, shown_sources


def test_a_withdrawn_answer_gives_way_to_the_refusal_with_the_reason() -> None:
    withdrawn = {"reason": "restates the question", "original": "[1].", "replacement": "Not in the KB."}
    shown = shown_answer("[1]. ", TurnFinished("stop", Usage(), withdrawn=withdrawn))
    assert shown.startswith("Not in the KB.\n\n") and "withdrawn: it restates the question" in shown
    assert shown_answer(" 33 seats [1]. ", TurnFinished("stop", Usage())) == "33 seats [1]."


def test_failed_turns_and_withdrawal_notes_are_not_sent_back_to_the_model() -> None:
    """An over-long message rejected once must not fail every later question of the conversation."""
    withdrawn = {"reason": "restates the question", "original": "[1].", "replacement": "Not in the KB."}
    refusal = shown_answer("[1].", TurnFinished("stop", Usage(), withdrawn=withdrawn))
    history = [
        {"role": "user", "content": "x" * 40_000},
        {"role": "assistant", "content": "**Error:** a message is longer than 32000 characters"},
        {"role": "user", "content": "股票代码？"},
        {"role": "assistant", "content": refusal},
        {"role": "user", "content": [{"type": "text", "text": "班车几点？"}]},
        {"role": "assistant", "content": "8:05 [1]."},
    ]
    assert conversation(history) == [
        ("user", "股票代码？"),
        ("assistant", "Not in the KB."),
        ("user", "班车几点？"),
        ("assistant", "8:05 [1]."),
    ]


def test_a_withdrawn_answer_shows_no_citation_verdicts() -> None:
    source = {"index": 1, "source": "a.md", "page": None, "text": "班车 8:05 发车。", "score": 0.9}
    unsupported = [{"index": 1, "supported": False, "overlap": 0.0}]
    withdrawn = {"reason": "restates the question", "original": "[1].", "replacement": "Not in the KB."}
    shown = shown_sources(TurnFinished("stop", Usage(), [source], unsupported, withdrawn))
    assert "Unsupported citation" not in shown and "withdrawn" in shown and "a.md" in shown
    kept = shown_sources(TurnFinished("stop", Usage(), [source], unsupported))
    assert "Unsupported citation [1]" in kept


def test_passages_of_a_refusal_are_shown_as_searched_not_as_sources() -> None:
    source = {"index": 1, "source": "a.md", "page": None, "text": "班车 8:05 发车。", "score": 0.9}
    shown = shown_sources(TurnFinished("stop", Usage(), [source], refused=True))
    assert shown.startswith("*These passages were searched; the model found no answer in them.*")
    assert "a.md" in shown
    answered = shown_sources(TurnFinished("stop", Usage(), [source]))
    assert answered.startswith("**[1] a.md")
    greeted = TurnFinished("stop", Usage(), [], refused=True, small_talk="greeting")
    assert shown_sources(greeted) == ""  # nothing was searched, so no "holds no relevant passage"
    assert "no passage relevant" in shown_sources(TurnFinished("stop", Usage(), [], refused=True))
