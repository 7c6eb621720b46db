"""Answer extraction and grading with math-verify (the parser and checker lighteval uses).

math-verify does the work: `math_verify.parse` finds the answer in generated text (the last
\\boxed{} first, then "the final answer is"-style anchors, then the last expression, LaTeX or
plain) and `math_verify.verify` decides whether two answers are equal (fractions, LaTeX, units,
percentages, sets, intervals, equations such as "9 \\cdot 2 = 18" against 18).

thinkc keeps only what math-verify does not do; each place is marked "not math-verify" below:
- option letters (GPQA): "Answer: C", "\\boxed{(B)}", a lone "(B)"; math-verify has no letters;
- GSM8K's "#### N" lines (in reference solutions and in generations that imitate them);
- clean-up before parsing: \\fbox -> \\boxed, \\textbf{x} -> x, an escaped dollar (a currency
  sign, "$\\$36$") dropped, and only the text after </think> when the model wrote an answer there;
- a math answer without $...$ after "the answer is" (2\\sqrt{3}, 6 - 5i, p - q, [-2, 2], 3, 5, 7):
  math-verify's plain-expression parser stops at the first number, so the span is wrapped in $...$
  and parsed by math-verify as LaTeX.
"""
from __future__ import annotations

import functools
import re

# A letter option written as "B", "(B)", "B)", "B.", "\text{(B)}", "\textbf{B}", "**B**".
_LETTER = re.compile(r"^\s*(?:\\text(?:bf)?\{\s*)?[*(\[]*\s*([A-Ja-j])\s*[)\].:*]*\s*\}?\s*$")
_ANSWER_IS = re.compile(
    r"\b(?:final\s+answer|answer)\b\s*(?:is|:|=)?\s*(?:\*\*)?\s*:?\s*(.+)", re.IGNORECASE
)
_GSM_ANSWER = re.compile(r"####\s*(.+)")
_OPTION_ALONE = re.compile(r"\(([A-J])\)|\b([A-J])\)")
_TEXTBF = re.compile(r"\\textbf\{([^{}]*)\}")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|\s+[A-Za-z]{2,}\b")  # "." ending a sentence, a line, a word


def _boxed_contents(text: str) -> list[str]:
    """Every \\boxed{...} / \\fbox{...} body in order, nested braces balanced; `\\boxed 5` (no
    braces) takes the next token. Used to decide whether the boxed answer is an option letter."""
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


def clean_text(text: str) -> str:
    """Not math-verify: normalise what its parser misses. \\fbox is a box; \\textbf{x} is x; an
    escaped \\$ is a currency sign (math-verify drops it inside $...$ but not outside); and an R1-style
    answer after </think> is where the final answer lives (the thinking may quote wrong ones)."""
    if "</think>" in text:
        tail = text.rsplit("</think>", 1)[1]
        if tail.strip():
            text = tail
    text = re.sub(r"\\fbox\b", r"\\boxed", text)
    for _ in range(3):  # \textbf{\textbf{x}}
        text = _TEXTBF.sub(r"\1", text)
    return text.replace("\\$", "")


def as_letter(answer: str | None) -> str | None:
    """'B', '(b)', '\\text{(B)}', '**C**' -> the upper-case letter; anything else -> None."""
    if answer is None:
        return None
    m = _LETTER.match(answer)
    return m.group(1).upper() if m else None


def _anchored_letter(span: str) -> str | None:
    """The option letter right after 'the answer is', if that is what follows. "Answer: c" is
    option C, but "answer: a circle" is not option A."""
    span = span.strip()
    token = re.split(r"[\s,;]", span, maxsplit=1)[0] if span else ""
    letter = as_letter(token)
    if letter and (not re.fullmatch(r"[a-j]", token) or span.rstrip(" .*") == token):
        return letter
    return None


def _letter_answer(text: str, boxed: str | None) -> str | None:
    """Not math-verify (it has no option letters): a letter in the last box; else after the last
    'answer is' / 'Answer:'; else a lone '(B)' in the last paragraph when no answer is anchored."""
    if boxed is not None:  # "\boxed{\text{(B)}}" -> "B"; a bare "\boxed{e}" stays a math symbol
        return None if re.fullmatch(r"[a-j]", boxed) else as_letter(boxed)
    spans = _ANSWER_IS.findall(text)
    if spans:
        return _anchored_letter(spans[-1])
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    options = _OPTION_ALONE.findall(paragraphs[-1]) if paragraphs else []
    return next(g for g in options[-1] if g) if options else None


def _bare_latex_answer(text: str) -> str | None:
    """Not math-verify: a math answer without $...$ after "the answer is": "2\\sqrt{3}", "6 - 5i",
    "p - q", "3, 5, 7", "[-2, 2]", "10\\%". math-verify's plain-expression parser keeps only the
    first number there, so the span (up to the end of the sentence or the first word) is wrapped in
    $...$ and parsed by math-verify's LaTeX extractor. A numeric chain "9 * 2 = 18" gives its result."""
    spans = _ANSWER_IS.findall(text)
    if not spans:
        return None
    rest = spans[-1].strip()
    cut = _SENTENCE_END.search(rest)
    span = (rest[:cut.start()] if cut else rest).strip().rstrip(",;:")
    if cut and cut.group(0).strip() and re.fullmatch(r"[A-Za-z]", span):
        return None  # "answer: a circle of radius 2": an article, not the variable a
    if not span or re.search(r"\$|\\\(|\\\[|\\boxed", span):
        return None  # delimited math: math-verify reads it itself
    if re.search(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+(?:\{[^{}]*\})?", "", span)):
        return None  # words, not math: math-verify's own anchors ("\\text{Evelyn}" is math here)
    sides = span.split("=")
    if len(sides) > 1 and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", "=".join(sides[:-1]))):
        span = sides[-1].strip()  # "9 * 2 = 18" -> "18"; "y = 2x + 3" stays an equation
    found = _parse(f"${span}$", latex_only=True)
    return found[1] if len(found) > 1 else None


def _parse(text: str, latex_only: bool = False) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # the last \boxed{} before any anchor or bare expression, as for R1-style outputs (lighteval's
    # math tasks use the same priority)
    config = [LatexExtractionConfig(boxed_match_priority=0)]
    if not latex_only:
        config.append(ExprExtractionConfig())
    return parse(text, extraction_config=config)


def extract_answer(text: str | None) -> str | None:
    """The final answer in generated text (a string, as math-verify extracted it), or None.

    Order: an option letter (boxed, anchored or lone); the last \\boxed{}; GSM8K's "#### N"; a
    bare LaTeX answer after "the answer is"; else math-verify's parse (an anchored answer, the last
    expression)."""
    if not text:
        return None
    text = clean_text(text)
    boxed = last_boxed(text)
    letter = _letter_answer(text, boxed)
    if letter:
        return letter
    if boxed is not None:
        # the box math-verify's parse would pick (boxed priority, last box), as the model wrote it:
        # math-verify returns its own normalised LaTeX (\boxed{0.5} -> "\frac{1}{2}"), which
        # reads worse in verdicts; is_correct parses this string with math-verify either way
        return boxed or None
    gsm = _GSM_ANSWER.findall(text)
    if gsm:  # not math-verify: GSM8K's "#### N" closes the solution, after any "the answer is"
        found = _parse(gsm[-1])
        if len(found) > 1 and found[1]:
            return found[1]
    bare = _bare_latex_answer(text)
    if bare:
        return bare
    found = _parse(text)
    return found[1] if len(found) > 1 and found[1] else None


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
    intervals...), or both are the same option letter (case-insensitive; not math-verify)."""
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


def grade(text: str | None, gold: str | None) -> tuple[str | None, bool]:
    """(extracted answer, correct?) for one generation: the verdict every thinkc path (infer, eval,
    the lighteval tasks) gives."""
    pred = extract_answer(text)
    return pred, is_correct(pred, gold)


def gold_from_reference(answer: str | None) -> str | None:
    """The gold answer in a reference field: the last \\boxed{} of a worked answer, the '#### N' of
    a GSM8K solution (not math-verify: a GSM8K convention), else the field itself (benchmark
    loaders store the bare answer)."""
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
