"""What the web UI's chat shows once a turn is over (the browser test drives the rest, in tests/e2e)."""

from __future__ import annotations

from rag.chat import TurnFinished, Usage
from rag.ui import shown_answer


def test_a_withdrawn_answer_gives_way_to_the_refusal_with_the_reason() -> None:
    withdrawn = {"reason": "restates the question", "original": "[1].", "replacement": "Not in the KB."}
    shown = shown_answer("[1]. ", TurnFinished("stop", Usage(), withdrawn=withdrawn))
    assert shown.startswith("Not in the KB.\n\n") and "withdrawn: it restates the question" in shown
    assert shown_answer(" 33 seats [1]. ", TurnFinished("stop", Usage())) == "33 seats [1]."
