"""Greetings and thanks, answered with a line of their own instead of a search.

"你好" or "thanks!" is no question about the documents: searched, it finds passages that merely
score above the relevance gate (multilingual-e5 puts "你好" at 0.87 to a policy paragraph), and the
model, told to answer only from them, replies with its refusal sentence beside three unrelated
sources. Only a message that is nothing but such a phrase is recognised; anything longer ("你好，年假
有几天？") is a question and goes through retrieval as usual.
"""

from __future__ import annotations

from typing import Literal

from rag.chinese_text import bare

SmallTalk = Literal["greeting", "thanks"]

_GREETINGS = (
    "你好 您好 你们好 大家好 你好啊 你好呀 嗨 哈喽 哈啰 在吗 在不在 早 早上好 上午好 中午好 下午好 "
    "晚上好 早上好呀 下午好呀 晚上好呀 hi hello hey hiya hithere hellothere heythere goodmorning "
    "goodafternoon goodevening greetings"
)
_THANKS = (
    "谢谢 谢谢你 谢谢您 多谢 感谢 感谢你 非常感谢 谢了 好的谢谢 "
    "thanks thankyou thanku thanksalot thankssomuch thankyousomuch thankyouverymuch thx"
)
_PHRASES: dict[SmallTalk, frozenset[str]] = {
    "greeting": frozenset(_GREETINGS.split()),
    "thanks": frozenset(_THANKS.split()),
}


def small_talk(message: str) -> SmallTalk | None:
    """The kind of small talk ``message`` is, ignoring case, script, spacing and punctuation; else None."""
    said = bare(message)
    return next((kind for kind, phrases in _PHRASES.items() if said in phrases), None)
