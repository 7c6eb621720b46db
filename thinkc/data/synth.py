"""The embedded default data set: multi-step arithmetic word problems whose `thinking` reads like
R1 output (design.md §1), blank lines between thoughts, a configurable share of verbose filler
thoughts (re-checks, restatements, "Wait,", "Hmm"), so CTS has tokens worth dropping and
LightThinker has thoughts worth compressing. Two thought styles:
  r1     (default) each step worked out at length (thinkc.data.synth_r1): restated, done column by
         column with carries/borrows, verified; thoughts of ~40-200 tokens; operands up to 99,
         running totals up to 990 by default (max_value=999 for 4-digit work).
  short  one sentence per step ("so 12 + 7 = 19."), numbers up to 100: the original small task.

Every record's meta holds what is needed to check it without parsing text:
  steps          number of arithmetic operations
  start, ops     the starting amount and [[op, operand], ...] with op in "+", "-", "*"
  result         the final amount (== the \\boxed{} value; always correct)
  thought_kinds  per thought of split_thoughts(thinking): "compute" (a step's computation or the
                 conclusion, needed for the result) or "filler" (redundant)
  style          "r1" or "short"
"""
from __future__ import annotations

import random

from thinkc.data import synth_r1 as r1
from thinkc.data.schema import Record

NAMES = [("Tom", "he"), ("Anna", "she"), ("Ben", "he"), ("Lily", "she"), ("Sam", "he"), ("Mia", "she"),
         ("Max", "he"), ("Emma", "she"), ("Leo", "he"), ("Zoe", "she")]
ITEMS = ["apples", "pencils", "books", "coins", "marbles", "cookies", "stickers", "cards"]
ADD = ["buys {b} more", "finds {b} more", "gets {b} more"]
SUB = ["gives away {b}", "loses {b}", "sells {b}"]
MUL = {2: "doubles the {items}", 3: "triples the {items}"}
FILLER_THOUGHTS = r1.FILLER_SENTENCES[:7]  # the short style's fillers: the first seven of the R1 style's
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


def _insert_fillers(rng: random.Random, thoughts: list, n_compute: int, filler: float, make) -> None:
    """Insert filler thoughts so that a share `filler` of all thoughts are filler (F / (F + C) ~=
    filler, randomised rounding), never after the conclusion. make(done) writes one, where `done`
    is the number of computation thoughts before it."""
    want = filler / (1 - filler) * n_compute if filler < 1 else 0
    n_filler = int(want) + (rng.random() < want - int(want))
    for _ in range(n_filler):
        pos = rng.randint(0, len(thoughts) - 1)
        done = sum(1 for _, k in thoughts[:pos] if k == "compute")
        thoughts.insert(pos, (make(done), "filler"))


def _record(idx: str, question: str, thoughts: list, start: int, ops: list, trail: list, style: str) -> Record:
    cur = trail[-1][3] if trail else start
    chain = ", ".join(f"{a} {op} {b} = {c}" for a, op, b, c in trail)
    answer = f"Starting from {start}: {chain}.\n\nThe answer is \\boxed{{{cur}}}."
    return Record(id=idx, question=question, thinking="\n\n".join(t for t, _ in thoughts), answer=answer,
                  meta={"steps": len(ops), "start": start, "ops": ops, "result": cur,
                        "thought_kinds": [k for _, k in thoughts], "style": style})


def _one_short(rng: random.Random, idx: str, min_steps: int, max_steps: int, filler: float, max_value: int,
               max_factor: int = 3) -> Record:  # the short style multiplies by 2 or 3 only
    name, pron = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    steps = rng.randint(min_steps, max_steps)
    start, ops = _ops(rng, steps, max_value)
    phrases = [_phrase(op, b, items, rng) for op, b in ops]
    question = r1.question_text(name, pron, items, start, phrases)

    # (text, kind) per thought: computations first, filler thoughts inserted afterwards
    thoughts, cur, trail = [], start, []
    for (op, b), p in zip(ops, phrases):
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

    def make(done: int) -> str:  # the context of a filler thought is the last computation before it
        if done:
            a, op, b, c = trail[min(done, len(trail)) - 1]
            return rng.choice(FILLER_THOUGHTS).format(a=a, op=op, b=b, c=c, name=name, items=items)
        return rng.choice(OPENING_FILLERS).format(c=start, name=name, items=items)

    _insert_fillers(rng, thoughts, len(thoughts), filler, make)
    return _record(idx, question, thoughts, start, ops, trail, "short")


def _one_r1(rng: random.Random, idx: str, min_steps: int, max_steps: int, filler: float, max_value: int,
            max_factor: int = 3) -> Record:
    name, pron = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    steps = rng.randint(min_steps, max_steps)
    start, ops = r1.ops(rng, steps, max_value, max_factor)
    phrases = [r1.phrase(op, b, items, rng) for op, b in ops]
    question = r1.question_text(name, pron, items, start, phrases)
    quotes = r1.op_sentences(name, pron, phrases)

    thoughts, cur, trail = [], start, []
    for k, ((op, b), q) in enumerate(zip(ops, quotes), 1):
        nxt = _apply(cur, op, b)
        thoughts.append((r1.compute_thought(k, name, items, q, cur, op, b, nxt, rng), "compute"))
        trail.append((cur, op, b, nxt))
        cur = nxt
    thoughts.append((f"All {steps} steps are done. So {name} has {cur} {items} now.", "compute"))

    def make(done: int) -> str:
        last = trail[min(done, len(trail)) - 1] if done else None
        return r1.filler_thought(rng, last, name, items, start)

    _insert_fillers(rng, thoughts, len(thoughts), filler, make)
    return _record(idx, question, thoughts, start, ops, trail, "r1")


STYLES = {"r1": (_one_r1, 99), "short": (_one_short, 100)}  # builder, default max_value


def _options(min_steps: int = 3, max_steps: int = 4, filler: float = 0.4, max_value: int | None = None,
             style: str = "r1", max_factor: int = 3) -> tuple:
    """Checked (builder, min_steps, max_steps, filler, max_value, max_factor); max_value None: the
    style's default."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (one of {', '.join(STYLES)})")
    build, default_max = STYLES[style]
    max_value = default_max if max_value is None else max_value
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if not 0 <= filler < 1:
        raise ValueError(f"filler is a share of thoughts in [0, 1), got {filler}")
    if max_value < 2:
        raise ValueError(f"max_value must be >= 2, got {max_value}")
    if not 2 <= max_factor <= 9:
        raise ValueError(f"max_factor must be in [2, 9], got {max_factor}")
    return build, min_steps, max_steps, filler, max_value, max_factor


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")


def synth_records(n: int, seed: int = 0, min_steps: int = 3, max_steps: int = 4, filler: float = 0.4,
                  max_value: int | None = None, id_prefix: str = "synth", style: str = "r1",
                  max_factor: int = 3, drill: float = 0.0) -> list[Record]:
    """`n` problems, the same for the same arguments (seeded, no global state). style "r1" (steps
    worked out at length; operands up to 99 by default, running totals up to 10x that,
    multiplication by 2..max_factor) or "short" (one line per step, up to 100). The defaults are the
    shipped tiny checkpoints' task. `drill` > 0 interleaves round(drill * n) practice records (column
    facts and bare column work, see _drill) among the problems, which stay the same problems in the same order."""
    _check_n(n)
    if not 0 <= drill <= 10:
        raise ValueError(f"drill is a number of practice records per problem in [0, 10], got {drill}")
    build, *opts = _options(min_steps, max_steps, filler, max_value, style, max_factor)
    rng = random.Random(f"thinkc-synth/{seed}")
    width = max(6, len(str(n)))
    out = [build(rng, f"{id_prefix}-{i:0{width}d}", *opts) for i in range(n)]
    n_drill = round(drill * n)
    if n_drill:
        max_value, max_factor = opts[3], opts[4]  # the style's default filled in
        drng = random.Random(f"thinkc-synth-drill/{seed}")
        extra = [_drill(drng, f"{id_prefix}-drill-{i:0{width}d}", max_value, max_factor) for i in range(n_drill)]
        out = _interleave(out, extra)
    return out


def _drill(rng: random.Random, idx: str, max_value: int, max_factor: int) -> Record:
    """A practice record: 6-10 thoughts, each a block of single-digit column facts and one bare
    calculation in the traces' column format (r1.drill_thinking)."""
    n = rng.randint(6, 10)
    thinking, last = r1.drill_thinking(rng, max_value, max_factor, n)
    return Record(id=idx, question=r1.DRILL_QUESTION, thinking=thinking, answer=f"The last result is \\boxed{{{last}}}.",
                  meta={"steps": n, "result": last, "thought_kinds": ["compute"] * n, "style": "drill"})


def _interleave(a: list, b: list) -> list:
    """a's and b's items in their own orders, b's spread evenly through a."""
    keyed = [((i + 0.5) / len(a), 0, x) for i, x in enumerate(a)] + [((j + 0.5) / len(b), 1, y) for j, y in enumerate(b)]
    return [x for *_, x in sorted(keyed, key=lambda t: (t[0], t[1]))]


def synth_splits(n_train: int, n_test: int, seed: int = 0, **kwargs) -> tuple[list[Record], list[Record]]:
    """(train, test) with no question shared between them; test comes from its own random stream.
    Raises ValueError when the number range is too small to give enough distinct test problems.
    `drill` (practice records) applies to train only; test holds problems only."""
    prefix = kwargs.pop("id_prefix", "synth")
    drill = kwargs.pop("drill", 0.0)
    _check_n(n_test)
    build, *opts = _options(**kwargs)
    train = synth_records(n_train, seed, id_prefix=f"{prefix}-train", drill=drill, **kwargs)
    seen = {r.question for r in train}
    rng = random.Random(f"thinkc-synth-test/{seed}")
    test, tries, width = [], 0, max(6, len(str(n_test)))
    while len(test) < n_test:
        tries += 1
        if tries > 20 * n_test + 1000:
            raise ValueError(f"could only find {len(test)} test problems not in train; widen max_value or steps")
        rec = build(rng, f"{prefix}-test-{len(test):0{width}d}", *opts)
        if rec.question not in seen:
            seen.add(rec.question)
            test.append(rec)
    return train, test
