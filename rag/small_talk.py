"""Greetings, thanks, goodbyes and a bare "ok", answered with a line of their own instead of a search.

"你好" or "thanks!" is no question about the documents: searched, it finds passages that merely
score above the relevance gate (multilingual-e5 puts "你好" at 0.87 to a policy paragraph), and the
model, told to answer only from them, replies with its refusal sentence beside three unrelated
sources. Only a message that is nothing but such a phrase is recognised; anything longer ("你好，年假
有几天？") is a question and goes through retrieval as usual.
"""

from __future__ import annotations

from typing import Literal

from rag.chinese_text import bare

SmallTalk = Literal["greeting", "thanks", "farewell", "acknowledgement"]

_GREETINGS = (
    "你好 您好 你们好 大家好 你好啊 你好呀 嗨 哈喽 哈啰 在吗 在不在 早 早上好 上午好 中午好 下午好 "
    "晚上好 早上好呀 下午好呀 晚上好呀 hi hello hey hiya hithere hellothere heythere goodmorning "
    "goodafternoon goodevening greetings"
)
_THANKS = (
    "谢谢 谢谢你 谢谢您 多谢 感谢 感谢你 非常感谢 谢了 好的谢谢 "
    "thanks thankyou thanku thanksalot thankssomuch thankyousomuch thankyouverymuch thx okthanks "
    "okthankyou greatthanks thanksbye 谢谢再见 好的感谢"
)
_FAREWELLS = "再见 再会 拜拜 拜 回头见 下次见 bye byebye goodbye seeyou seeya seeyoulater cya"
# What a user types after an answer that needs no reply of substance; searched, "ok" found passages
# that merely scored above the gate and the model wrote a refusal beside them.
# Words that can also be a whole question are left out: "可以？" (is that allowed?), "Fine?" (a
# penalty), "NICE" (the UK health body); and one asked ("OK?") is a question, not an acknowledgement.
_ACKNOWLEDGEMENTS = (
    "好的 好吧 好滴 嗯 嗯嗯 哦 噢 收到 明白 明白了 知道了 了解 了解了 懂了 没问题 "
    "ok okay okok alright allright gotit understood noted cool perfect great awesome 太好了"
)
# Thanks said with a word of praise before or after it: "Awesome, thank you", "Thanks, that helps!".
_THANKS_CORE = (
    "thanks thankyou thanku ty tysm thx manythanks muchappreciated appreciateit 谢谢 多谢 感谢 谢啦 谢谢啦"
)
_THANKS_BEFORE = " ok okay great awesome perfect cool nice super 好的 好 太好了"  # the leading "": none
_THANKS_AFTER = " again thathelps thatshelpful thatwashelpful thathelpsalot verymuch bye 再见 啦 了"
_PRAISE = "cheers 太感谢了 辛苦了 辛苦啦"
_PHRASES: dict[SmallTalk, frozenset[str]] = {
    "greeting": frozenset(_GREETINGS.split()),
    "thanks": frozenset(_THANKS.split())
    | {
        before + core + after
        for core in _THANKS_CORE.split()
        for before in _THANKS_BEFORE.split(" ")
        for after in _THANKS_AFTER.split(" ")
    }
    | frozenset(_PRAISE.split()),
    "farewell": frozenset(_FAREWELLS.split()),
    "acknowledgement": frozenset(_ACKNOWLEDGEMENTS.split()),
}


def small_talk(message: str) -> SmallTalk | None:
    """The kind of small talk ``message`` is, ignoring case, script, spacing and punctuation; else None."""
    said = bare(message)
    kind = next((kind for kind, phrases in _PHRASES.items() if said in phrases), None)
    asked = message.rstrip().endswith(("?", "？"))
    return None if kind == "acknowledgement" and asked else kind
