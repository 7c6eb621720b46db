"""The embedded default data set: multi-step arithmetic word problems whose `thinking` reads like
R1 output (design.md §1). One computation per thought, blank lines between thoughts, plus a
configurable share of verbose filler thoughts (re-checks, restatements, "Wait,", "Hmm") and filler
phrases inside computation thoughts, so CTS has tokens worth dropping and LightThinker has thoughts
worth compressing. Wording is regular and numbers small so a tiny model can learn it on a CPU.

Every record's meta holds what is needed to check it without parsing text:
  steps          number of arithmetic operations
  start, ops     the starting amount and [[op, operand], ...] with op in "+", "-", "*"
  result         the final amount (== the \\boxed{} value; always correct)
  thought_kinds  per thought of split_thoughts(thinking): "compute" (a step's computation or the
                 conclusion, needed for the result) or "filler" (redundant)
"""
from __future__ import annotations

import random

from thinkc.data.schema import Record

NAMES = [("Tom", "he"), ("Anna", "she"), ("Ben", "he"), ("Lily", "she"), ("Sam", "he"), ("Mia", "she"),
         ("Max", "he"), ("Emma", "she"), ("Leo", "he"), ("Zoe", "she")]
ITEMS = ["apples", "pencils", "books", "coins", "marbles", "cookies", "stickers", "cards"]
ORDINALS = ["First", "Then", "Next", "After that", "Later", "Then", "Next", "After that"]
ADD = ["buys {b} more", "finds {b} more", "gets {b} more"]
SUB = ["gives away {b}", "loses {b}", "sells {b}"]
MUL = {2: "doubles the {items}", 3: "triples the {items}"}
FILLER_THOUGHTS = [
    "Hmm, let me double-check that. {a} {op} {b} is {c}, yes.",
    "Wait, let me re-read the question to make sure I have the numbers right.",
    "Okay, so far {name} has {c} {items}.",
    "Let me think about this carefully, one step at a time.",
    "Actually, yes, that seems right. {c} {items} so far.",
    "Hmm, so the question asks how many {items} {name} has at the end.",
    "Wait, did I use the right operation? Let me check again. Yes, it is {op}.",
]
OPENING_FILLERS = [  # before any computation: nothing to re-check yet
    "Okay, let me see. {name} starts with {c} {items}.",
    "Let me think about this carefully, one step at a time.",
    "Hmm, so the question asks how many {items} {name} has at the end.",
]
FILLER_PREFIX = ["Wait, ", "Hmm, ", "Okay, so ", "Alright, "]
FILLER_SUFFIX = [" I think that's right.", " That makes sense.", " Let me keep going."]


def _ops(rng: random.Random, steps: int, max_value: int) -> tuple[int, list[list]]:
    """A start value and `steps` operations whose running total stays in [0, 10 * max_value]."""
    cur = start = rng.randint(2, max_value)
    ops = []
    for _ in range(steps):
        kind = rng.choice("+-*")
        if kind == "*" and cur * 2 > 10 * max_value:
            kind = "-"
        if kind == "-" and cur < 2:
            kind = "+"
        if kind == "+":
            b = rng.randint(1, max_value)
            cur += b
        elif kind == "-":
            b = rng.randint(1, min(cur - 1, max_value))
            cur -= b
        else:
            b = 3 if cur * 3 <= 10 * max_value and rng.random() < 0.4 else 2
            cur *= b
        ops.append([kind, b])
    return start, ops


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _phrase(op: str, b: int, items: str, rng: random.Random) -> str:
    if op == "*":
        return MUL[b].format(items=items)
    return rng.choice(ADD if op == "+" else SUB).format(b=b)


def _one(rng: random.Random, idx: str, min_steps: int, max_steps: int, filler: float, max_value: int) -> Record:
    name, pron = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    steps = rng.randint(min_steps, max_steps)
    start, ops = _ops(rng, steps, max_value)

    phrases = [_phrase(op, b, items, rng) for op, b in ops]
    sentences = [f"{name} has {start} {items}."]
    for i, p in enumerate(phrases):
        who = name if i == 0 else pron
        lead = "Finally" if i == len(phrases) - 1 and i > 0 else ORDINALS[i % len(ORDINALS)]
        sentences.append(f"{lead}, {who} {p}.")
    sentences.append(f"How many {items} does {name} have now?")
    question = " ".join(sentences)

    # (text, kind) per thought: computations first, filler thoughts inserted afterwards
    thoughts, cur, trail = [], start, []
    for i, ((op, b), p) in enumerate(zip(ops, phrases)):
        nxt = _apply(cur, op, b)
        text = f"{name} {p}, so {cur} {op} {b} = {nxt}."
        if rng.random() < filler:
            text = rng.choice(FILLER_PREFIX) + text
        if rng.random() < filler / 2:
            text += rng.choice(FILLER_SUFFIX)
        thoughts.append((text, "compute"))
        trail.append((cur, op, b, nxt))
        cur = nxt
    thoughts.append((f"So {name} has {cur} {items} now.", "compute"))

    # share `filler` of all thoughts are filler: F / (F + C) ~= filler (randomised rounding)
    n_compute = len(thoughts)
    want = filler / (1 - filler) * n_compute if filler < 1 else 0
    n_filler = int(want) + (rng.random() < want - int(want))
    for _ in range(n_filler):
        pos = rng.randint(0, len(thoughts) - 1)  # never after the conclusion
        # the context of a filler thought is the last computation before it
        done = sum(1 for t, k in thoughts[:pos] if k == "compute")
        if done:
            a, op, b, c = trail[min(done, len(trail)) - 1]
            text = rng.choice(FILLER_THOUGHTS).format(a=a, op=op, b=b, c=c, name=name, items=items)
        else:
            text = rng.choice(OPENING_FILLERS).format(c=start, name=name, items=items)
        thoughts.insert(pos, (text, "filler"))

    chain = ", ".join(f"{a} {op} {b} = {c}" for a, op, b, c in trail)
    answer = f"Starting from {start}: {chain}.\n\nThe answer is \\boxed{{{cur}}}."
    return Record(id=idx, question=question, thinking="\n\n".join(t for t, _ in thoughts), answer=answer,
                  meta={"steps": steps, "start": start, "ops": ops, "result": cur,
                        "thought_kinds": [k for _, k in thoughts]})


def _check(n: int, min_steps: int, max_steps: int, filler: float, max_value: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if not 0 <= filler < 1:
        raise ValueError(f"filler is a share of thoughts in [0, 1), got {filler}")
    if max_value < 2:
        raise ValueError(f"max_value must be >= 2, got {max_value}")


def synth_records(n: int, seed: int = 0, min_steps: int = 3, max_steps: int = 6, filler: float = 0.4,
                  max_value: int = 100, id_prefix: str = "synth") -> list[Record]:
    """`n` problems, the same for the same arguments (seeded, no global state)."""
    _check(n, min_steps, max_steps, filler, max_value)
    rng = random.Random(f"thinkc-synth/{seed}")
    width = max(6, len(str(n)))
    return [_one(rng, f"{id_prefix}-{i:0{width}d}", min_steps, max_steps, filler, max_value) for i in range(n)]


def synth_splits(n_train: int, n_test: int, seed: int = 0, **kwargs) -> tuple[list[Record], list[Record]]:
    """(train, test) with no question shared between them; test comes from its own random stream.
    Raises ValueError when the number range is too small to give enough distinct test problems."""
    prefix = kwargs.pop("id_prefix", "synth")
    train = synth_records(n_train, seed, id_prefix=f"{prefix}-train", **kwargs)
    seen = {r.question for r in train}
    _check(n_test, kwargs.get("min_steps", 3), kwargs.get("max_steps", 6), kwargs.get("filler", 0.4),
           kwargs.get("max_value", 100))
    rng = random.Random(f"thinkc-synth-test/{seed}")
    test, tries, width = [], 0, max(6, len(str(n_test)))
    opts = {k: kwargs.get(k, d) for k, d in (("min_steps", 3), ("max_steps", 6), ("filler", 0.4), ("max_value", 100))}
    while len(test) < n_test:
        tries += 1
        if tries > 20 * n_test + 1000:
            raise ValueError(f"could only find {len(test)} test problems not in train; widen max_value or steps")
        rec = _one(rng, f"{prefix}-test-{len(test):0{width}d}", **opts)
        if rec.question not in seen:
            seen.add(rec.question)
            test.append(rec)
    return train, test
