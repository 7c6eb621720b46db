"""Answer extraction from generated text and equivalence checking with math-verify.

Extraction is ours (the model's last \\boxed{} is what every reasoning benchmark grades); deciding
whether two answers are equal is math-verify's job (the checker lighteval uses). The only rule we
add is for multiple-choice letters, which are compared case-insensitively.
"""
from __future__ import annotations

import functools
import re

# A letter option written as "B", "(B)", "B)", "B.", "\text{(B)}", "\textbf{B}", "**B**".
_LETTER = re.compile(r"^\s*(?:\\text(?:bf)?\{\s*)?[*(\[]*\s*([A-Ja-j])\s*[)\].:*]*\s*\}?\s*$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(
    r"\b(?:final\s+answer|answer)\b\s*(?:is|:|=)?\s*(?:\*\*)?\s*:?\s*(.+)", re.IGNORECASE
)
_GSM_ANSWER = re.compile(r"####\s*(.+)")
_OPTION_ALONE = re.compile(r"\(([A-J])\)|\b([A-J])\)")


def _boxed_contents(text: str) -> list[str]:
    """Every \\boxed{...} / \\fbox{...} body in order, nested braces balanced; `\\boxed 5` (no
    braces) takes the next token."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*(\{)?", text):
        i = m.end()
        if m.group(1) is None:  # "\boxed 5" / "\boxed{}"-less form
            tok = re.match(r"[^\s$]+", text[i:])
            if tok:
                out.append(tok.group(0).rstrip(".,;"))
            continue
        depth, j = 1, i
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth == 0:
            out.append(text[i : j - 1].strip())
    return out


def last_boxed(text: str) -> str | None:
    """The body of the last \\boxed{} in `text`, or None."""
    found = _boxed_contents(text or "")
    return found[-1] if found else None


def _final_part(text: str) -> str:
    """Where a final answer lives: after </think> when present, else the last paragraph."""
    if "</think>" in text:
        tail = text.rsplit("</think>", 1)[1]
        if tail.strip():
            return tail
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return paragraphs[-1] if paragraphs else text


def _clean_span(span: str) -> str | None:
    """Reduce the text after 'the answer is' to the answer: a $...$ expression, a letter option or
    a number."""
    span = span.strip()
    math = re.match(r"\$+([^$]+)\$+|\\\((.+?)\\\)|\\\[(.+?)\\\]", span)
    if math:
        return next(g for g in math.groups() if g is not None).strip()
    token = re.split(r"[\s,;]", span, maxsplit=1)[0] if span else ""
    letter = as_letter(token)
    # "Answer: c" is option C, but "answer: a circle" is not option A
    if letter and (not re.fullmatch(r"[a-j]", token) or span.rstrip(" .*") == token):
        return letter
    num = _NUMBER.search(span)
    if num:
        return num.group(0)
    return None


def extract_answer(text: str | None) -> str | None:
    """The final answer in generated text, or None.

    Order: the last \\boxed{}/\\fbox{}; "#### N" (GSM8K); "the answer is X" / "Answer: X"; a lone
    option "(B)"; the last plain number of the final answer part.
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:  # "\boxed{\text{(B)}}" -> "B"; a bare "\boxed{e}" stays a math symbol
        return boxed if re.fullmatch(r"[a-j]", boxed) else as_letter(boxed) or boxed
    gsm = _GSM_ANSWER.findall(text)
    if gsm:
        got = _clean_span(gsm[-1])
        if got:
            return got
    final = _final_part(text)
    for span in reversed(_ANSWER_IS.findall(final)):
        got = _clean_span(span)
        if got:
            return got
    options = _OPTION_ALONE.findall(final)
    if options:
        return next(g for g in options[-1] if g)
    numbers = _NUMBER.findall(final)
    return numbers[-1].rstrip(".") if numbers else None


def as_letter(answer: str | None) -> str | None:
    """'B', '(b)', '\\text{(B)}', '**C**' -> the upper-case letter; anything else -> None."""
    if answer is None:
        return None
    m = _LETTER.match(answer)
    return m.group(1).upper() if m else None


def anchor_math(answer: str) -> str:
    """math-verify's LaTeX extractor needs an anchor: bare "\\frac{1}{2}" parses to nothing, so
    wrap an answer in $...$ unless it already has $ delimiters or a \\boxed{}."""
    anchored = re.search(r"(?<!\\)\$", answer) or "\\boxed" in answer  # an escaped \$ is a dollar sign
    return answer if anchored else f"${answer}$"


@functools.lru_cache(maxsize=65536)
def _parsed(answer: str):
    from math_verify import parse

    return parse(anchor_math(answer))


def is_correct(pred: str | None, gold: str | None) -> bool:
    """True when `pred` equals `gold` by math-verify (fractions, LaTeX, units, percentages, sets,
    intervals...), or both are the same option letter (case-insensitive)."""
    if pred is None or gold is None or not str(pred).strip() or not str(gold).strip():
        return False
    pred, gold = str(pred).strip(), str(gold).strip()
    gold_letter = as_letter(gold)
    pred_letter = as_letter(pred)
    if gold_letter is not None and (pred_letter is not None or gold.isupper()):
        return gold_letter == pred_letter
    from math_verify import verify

    gold_parsed, pred_parsed = _parsed(gold), _parsed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed))


def gold_from_reference(answer: str | None) -> str | None:
    """The gold answer in a reference field: the last \\boxed{} of a worked answer, the '#### N' of
    a GSM8K solution, else the field itself (benchmark loaders store the bare answer)."""
    if answer is None:
        return None
    answer = str(answer).strip()
    boxed = last_boxed(answer)
    if boxed:
        return boxed
    gsm = _GSM_ANSWER.findall(answer)
    if gsm:
        return gsm[-1].strip().replace(",", "")
    return answer or None
