"""Small talk (greetings, thanks, goodbyes, "ok"): recognised only when it is the whole message."""

from __future__ import annotations

import pytest

from rag.small_talk import small_talk


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("你好", "greeting"),
        ("您好！", "greeting"),
        ("Hello!", "greeting"),
        ("hey there 👋", "greeting"),
        ("Good morning.", "greeting"),
        ("Hi there!", "greeting"),
        ("谢谢！", "thanks"),
        ("謝謝", "thanks"),  # Traditional script
        ("Thank you very much!", "thanks"),
        ("OK, thanks!", "thanks"),
        ("Thanks, that helps!", "thanks"),
        ("Awesome, thank you", "thanks"),
        ("Great, thanks again!", "thanks"),
        ("Cheers", "thanks"),
        ("ty", "thanks"),
        ("谢谢啦", "thanks"),
        ("Perfect.", "acknowledgement"),
        ("cool", "acknowledgement"),
        ("Perfect?", None),
        ("Is perfect attendance rewarded?", None),
        ("Bye!", "farewell"),
        ("再见～", "farewell"),
        ("ok", "acknowledgement"),
        ("好的。", "acknowledgement"),
        ("Got it.", "acknowledgement"),
        ("可以吗？", None),
        ("OK?", None),  # asked, not acknowledged
        ("Fine?", None),  # a penalty, in an HR handbook
        ("可以", None),
        ("在吗？", "greeting"),
        ("你好，年假有几天？", None),  # a question after the greeting: answered from the documents
        ("Hello World 示例代码在哪里？", None),
        ("How do I say thanks to the team?", None),
        ("", None),
    ],
)
def test_small_talk_is_the_whole_message(message: str, kind: str | None) -> None:
    assert small_talk(message) == kind
