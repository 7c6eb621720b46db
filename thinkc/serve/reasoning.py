"""Generated tokens -> text, stop strings, and the thinking / answer split.

The prompt thinkc builds ends with "<think>\\n" (thinkc.gist.layout), so a reply starts inside the
thinking: everything before the end-of-thinking tag ("</think>") is the reasoning, what follows it
(leading whitespace dropped) is the answer. A reply that never writes the tag is all reasoning and
has no content. This is the rule thinkc.eval grades by (the answer after the last "</think>").

TextStream decodes incrementally (a few tokens of context before the new ones, so a character
split over tokens comes out whole) and holds back text that may be the start of a stop string;
ReasoningSplitter holds back text that may be the start of the tag. Both give, concatenated, what
the one-shot functions give on the whole text (tests/test_serve_text.py)."""
from __future__ import annotations

THINK_END = "</think>"
CONTEXT = 5  # tokens decoded again before the new ones


def split_reasoning(text: str, tag: str = THINK_END) -> tuple[str, str | None]:
    """(reasoning, content) of a whole reply; content None when the thinking never ended."""
    if tag not in text:
        return text, None
    reasoning, content = text.split(tag, 1)
    return reasoning, content.lstrip()


def _partial_suffix(text: str, word: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of word."""
    for k in range(min(len(word) - 1, len(text)), 0, -1):
        if text.endswith(word[:k]):
            return k
    return 0


class TextStream:
    """Incremental detokenisation with stop strings. add(ids) -> the text safe to send now."""

    def __init__(self, tokenizer, stop: list[str] = ()):
        self.tok, self.stop = tokenizer, list(stop)
        self.ids: list[int] = []
        self.prefix = self.read = 0  # token offsets: context start, end of what was decoded
        self.text = ""  # everything decoded so far
        self.sent = 0  # characters of text already given out
        self.stopped = False  # a stop string was found (text ends before it)

    def _decode(self, ids) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def _advance(self) -> None:
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.text += after[len(before):]
            self.prefix = max(0, len(self.ids) - CONTEXT)
            self.read = len(self.ids)

    def add(self, ids: list[int]) -> str:
        if self.stopped:
            return ""
        self.ids += ids
        self._advance()
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the text at the end of the reply."""
        if not self.stopped:
            whole = self._decode(self.ids)
            if whole.startswith(self.text[:self.sent]):  # incremental decoding agreed: take the exact text
                self.text = whole
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stop and not self.stopped:
            start = max(0, self.sent - max(map(len, self.stop)))
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text, self.stopped = self.text[:min(hits)], True
        end = len(self.text)
        if self.stop and not self.stopped and not final:
            end -= max(_partial_suffix(self.text, s) for s in self.stop)
        out = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        return out


class ReasoningSplitter:
    """feed(text) -> (reasoning delta, content delta), for a stream of text that starts thinking."""

    def __init__(self, tag: str = THINK_END):
        self.tag = tag
        self.thinking = True
        self.pending = ""  # text that may be the start of the tag (thinking) or leading whitespace
        self.started = False  # content has had a non-space character

    def feed(self, text: str, final: bool = False) -> tuple[str, str]:
        if not self.thinking:
            return "", self._content(text, final)
        text = self.pending + text
        self.pending = ""
        if self.tag in text:
            reasoning, rest = text.split(self.tag, 1)
            self.thinking = False
            return reasoning, self._content(rest, final)
        hold = 0 if final else _partial_suffix(text, self.tag)
        self.pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold], ""

    def _content(self, text: str, final: bool) -> str:
        if self.started:
            return text
        text = text.lstrip()
        self.started = bool(text)
        return text
