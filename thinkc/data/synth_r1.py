"""The R1-length thought style of the synthetic task (thinkc.data.synth, style="r1", the default).

Each computation thought works one step out at length, the way R1 traces do: it restates what is
known, does the operation column by column (digit by digit, with carries or borrows, one line per
column), states the result and often verifies it by the inverse operation. Filler thoughts are
the rambling kinds of the short style, two or three sentences each. Wording is regular so a tiny
model can learn it; every number written is computed here, so traces are always correct.
"""
from __future__ import annotations

import random

PLACES = ["Ones", "Tens", "Hundreds", "Thousands", "Ten thousands", "Hundred thousands"]
SYMBOL = {"+": "+", "-": "-", "*": "*"}
INVERSE = {"+": "-", "-": "+", "*": "/"}
MUL_WORD = {2: "doubles the {items}", 3: "triples the {items}"}
ADD = ["buys {b} more", "finds {b} more", "gets {b} more"]
SUB = ["gives away {b}", "loses {b}", "sells {b}"]
STEP_LEAD = ["Step {k}: {quote}", "Now step {k}: {quote}", "Okay, step {k}: {quote}"]  # quote: the question's sentence
VERIFY = ["Let me verify: {c} {inv} {b} = {a}. Correct.", "Check: {c} {inv} {b} = {a}, which matches."]
FILLER_SENTENCES = [
    "Hmm, let me double-check that. {a} {op} {b} is {c}, yes.",
    "Wait, let me re-read the question to make sure I have the numbers right.",
    "Okay, so far {name} has {c} {items}.",
    "Let me think about this carefully, one step at a time.",
    "Actually, yes, that seems right. {c} {items} so far.",
    "Hmm, so the question asks how many {items} {name} has at the end.",
    "Wait, did I use the right operation? Let me check again. Yes, it is {op}.",
    "I should not rush this, small mistakes add up quickly.",
    "Alright, I think that's right. Let me keep going.",
]
OPENING_SENTENCES = [  # before any computation: nothing to re-check yet
    "Okay, let me see. {name} starts with {c} {items}.",
    "Let me think about this carefully, one step at a time.",
    "Hmm, so the question asks how many {items} {name} has at the end.",
    "I should not rush this, small mistakes add up quickly.",
    "Wait, let me re-read the question to make sure I have the numbers right.",
]


def ops(rng: random.Random, steps: int, max_value: int, max_factor: int = 3) -> tuple[int, list[list]]:
    """A start value and `steps` operations ("+" / "-" with an operand in [1, max_value], "*" by a
    single digit 2..max_factor) whose running total stays in [1, 10 * max_value]."""
    cap = 10 * max_value
    cur = start = rng.randint(max(2, max_value // 10), max_value)
    out = []
    for _ in range(steps):
        kind = rng.choice("+-*")
        if kind == "*" and cur * 2 > cap:
            kind = "-"
        if kind == "+" and cur + 1 > cap:
            kind = "-"
        if kind == "-" and cur < 2:
            kind = "+"
        if kind == "+":
            b = rng.randint(1, min(max_value, cap - cur))
            cur += b
        elif kind == "-":
            b = rng.randint(1, min(cur - 1, max_value))
            cur -= b
        else:
            b = rng.randint(2, min(max_factor, cap // cur))
            cur *= b
        out.append([kind, b])
    return start, out


def phrase(op: str, b: int, items: str, rng: random.Random) -> str:
    if op == "*":
        return MUL_WORD[b].format(items=items) if b in MUL_WORD else f"gets {b} times as many {items}"
    return rng.choice(ADD if op == "+" else SUB).format(b=b)


def _digits(x: int, n: int) -> list[int]:
    """The n lowest digits of x, ones first."""
    return [(x // 10 ** i) % 10 for i in range(n)]


def add_lines(a: int, b: int) -> list[str]:
    n = max(len(str(a)), len(str(b)))
    da, db, carry, lines = _digits(a, n), _digits(b, n), 0, []
    for i in range(n):
        s = da[i] + db[i] + carry
        lhs = f"{da[i]} + {db[i]}" + (f" + {carry}" if carry else "")
        line = f"{PLACES[i]}: {lhs} = {s}, write {s % 10}"
        carry = s // 10
        lines.append(line + (f", carry {carry}." if carry else "."))
    if carry:
        lines.append(f"{PLACES[n]}: carry {carry}, write {carry}.")
    return lines


def sub_lines(a: int, b: int) -> list[str]:
    n = len(str(a))
    da, db, borrow, lines = _digits(a, n), _digits(b, n), 0, []
    for i in range(n):
        top = da[i] - borrow
        tail = f" - {db[i]}" + (" - 1" if borrow else "")
        if top < db[i]:
            lines.append(f"{PLACES[i]}: {da[i]}{tail}, borrow 10: {da[i] + 10}{tail} = {top + 10 - db[i]}.")
            borrow = 1
        else:
            lines.append(f"{PLACES[i]}: {da[i]}{tail} = {top - db[i]}.")
            borrow = 0
    return lines


def mul_lines(a: int, k: int) -> list[str]:
    n = len(str(a))
    da, carry, lines = _digits(a, n), 0, []
    for i in range(n):
        p = da[i] * k + carry
        lhs = f"{da[i]} * {k}" + (f" + {carry}" if carry else "")
        carry = p // 10
        lines.append(f"{PLACES[i]}: {lhs} = {p}, write {p % 10}" + (f", carry {carry}." if carry else "."))
    if carry:
        lines.append(f"{PLACES[n]}: carry {carry}, write {carry}.")
    return lines


COLUMN_WORK = {"+": add_lines, "-": sub_lines, "*": mul_lines}


def compute_thought(k: int, name: str, items: str, quote: str, a: int, op: str, b: int, c: int,
                    rng: random.Random) -> str:
    """One step worked out at length: the question's sentence for it quoted word for word, then
    restate, column work, result, often a verification. Quoting (rather than paraphrasing) keeps
    finding the step a copy of what follows the previous step's sentence in the question."""
    lines = [rng.choice(STEP_LEAD).format(k=k, quote=quote)]
    lines.append(f"{name} has {a} {items} before this, so I need {a} {SYMBOL[op]} {b}.")
    lines += COLUMN_WORK[op](a, b)
    lines.append(f"So {a} {SYMBOL[op]} {b} = {c}.")
    if rng.random() < 0.6:
        lines.append(rng.choice(VERIFY).format(a=a, b=b, c=c, inv=INVERSE[op]))
    return "\n".join(lines)


def filler_thought(rng: random.Random, done: tuple | None, name: str, items: str, start: int) -> str:
    """Two or three filler sentences about the last computation (`done` = (a, op, b, c)), or opening
    remarks when nothing is computed yet."""
    n = rng.randint(2, 3)
    if done is None:
        picks = rng.sample(OPENING_SENTENCES, n)
        return " ".join(p.format(c=start, name=name, items=items) for p in picks)
    a, op, b, c = done
    picks = rng.sample(FILLER_SENTENCES, n)
    return " ".join(p.format(a=a, op=SYMBOL[op], b=b, c=c, name=name, items=items) for p in picks)


ADVERBS = ["first", "then", "next", "later", "afterwards", "lastly", "after that", "at the end"]


def op_sentences(name: str, pron: str, phrases: list[str]) -> list[str]:
    """The question's sentence for each operation ("She then loses 59."). The adverb names the
    step's place (one per index, whatever the number of steps) and sits right before the verb, so a
    step's lead ("Step 2: She then loses 59.") is a copy of what follows that adverb in the question."""
    return [f"{pron.capitalize()} {ADVERBS[i % len(ADVERBS)]} {p}." for i, p in enumerate(phrases)]


def question_text(name: str, pron: str, items: str, start: int, phrases: list[str]) -> str:
    return " ".join([f"{name} has {start} {items}.", *op_sentences(name, pron, phrases),
                     f"How many {items} does {name} have now?"])


DRILL_QUESTION = "Practice: work out each calculation column by column."


def column_fact(rng: random.Random, max_factor: int) -> str:
    """One single-digit fact exactly as it sits inside a column line of the traces: "7 + 8 + 1 = 16",
    "15 - 9 - 1 = 5" (after a borrow), "4 - 3 = 1", "7 * 3 + 2 = 23"."""
    kind = rng.choice("+-b*")
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if kind == "+":
        c = rng.randint(0, 1)
        return f"{a} + {b}" + (f" + {c}" if c else "") + f" = {a + b + c}"
    if kind == "*":
        k, c = rng.randint(2, max_factor), rng.randint(0, max_factor - 1)
        return f"{a} * {k}" + (f" + {c}" if c else "") + f" = {a * k + c}"
    c = rng.randint(0, 1)
    top = a + 10 if kind == "b" else max(a, b + c)
    return f"{top} - {b}" + (" - 1" if c else "") + f" = {top - b - c}"


def drill_thinking(rng: random.Random, max_value: int, max_factor: int, n: int) -> tuple[str, int]:
    """Practice text for the stage that plays the pretrained model: `n` thoughts, each a block of
    single-digit facts (column_fact, one per line) and one bare calculation written exactly as the
    traces' column work (no story, no filler). The facts are what the tiny models get wrong; here
    they are a quarter of the tokens instead of ~2 % inside word problems. Returns (thinking, last
    result)."""
    thoughts, c = [], 0
    for _ in range(n):
        op = rng.choice("+-*")
        if op == "*":
            b = rng.randint(2, max_factor)
            a = rng.randint(2, 10 * max_value // b)
        elif op == "+":
            a, b = rng.randint(1, 10 * max_value), rng.randint(1, max_value)
        else:
            a = rng.randint(2, 10 * max_value)
            b = rng.randint(1, min(a - 1, max_value))
        c = a + b if op == "+" else a - b if op == "-" else a * b
        facts = [column_fact(rng, max_factor) + "." for _ in range(8)]
        lines = facts + [f"I need {a} {SYMBOL[op]} {b}."] + COLUMN_WORK[op](a, b) + [f"So {a} {SYMBOL[op]} {b} = {c}."]
        thoughts.append("\n".join(lines))
    return "\n\n".join(thoughts), c
