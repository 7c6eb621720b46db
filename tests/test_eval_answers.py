"""Answer extraction and math-verify equivalence on tricky cases."""
import pytest

from thinkc.eval.answers import as_letter, extract_answer, gold_from_reference, is_correct, last_boxed

EXTRACT = [
    # (generated text, expected extracted answer)
    ("so the result is \\boxed{\\frac{1}{\\sqrt{2}}} done", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("first \\boxed{3}, wait, no: \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # the last box wins
    ("\\boxed{\\text{(D)}}", "D"),
    ("\\boxed{b}", "b"),  # could be a symbol; is_correct still matches option B case-insensitively
    ("\\boxed{(b)}", "B"),
    ("\\fbox{7}", "7"),
    ("$\\boxed 5$.", "5"),  # \boxed without braces
    ("Hmm.\n\nThe answer is 42.", "42"),
    ("The final answer is $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("steps...\n#### 1,234", "1234"),
    ("so the answer is 70? No: 36 + 36 = 72.\n#### 72", "72"),  # the closing #### wins
    ("Answer: C", "C"),
    ("Thinking...\n\nAnswer: c", "C"),
    ("The answer is: **B**", "B"),
    ("I would pick (B) here", "B"),
    ("answer: a circle of radius 2", "2"),  # a lower-case word is not option A
    ("there are 3 cats\n\nso 12 apples in total.", "12"),  # last number of the final paragraph
    ("step 5\n</think>\nThe answer is 7 apples", "7"),
    ("-3.5 is it", "-3.5"),
    ("no numbers at all", None),
    # forms the hand-written extractor got wrong (issue 15)
    ("Each has 9. The answer is 9 * 2 = 18.", "18"),  # the final result, not the first number
    ("So the answer is \\frac{14}{3}.", "\\frac{14}{3}"),  # bare LaTeX
    ("The answer is 6 - 5i.", "6 - 5i"),
    ("Thus the answer is 2\\sqrt{3} units", "2\\sqrt{3}"),
    ("The answer is x^2+1.", "x^2+1"),
    ("The total is $\\$36$.", "36"),  # an escaped dollar
    ("Total: \\$36.", "36"),
    ("so \\boxed{\\textbf{18}}", "18"),
    ("so \\boxed{\\textbf{(C)}}", "C"),
    ("The answer is $204$.\n\n-sepehr2010", "204"),  # a signature after an AIME solution
    ("So we get $\\boxed{204}$.\n\n~sepehr2010", "204"),
    ("We get 204.\n\n~sepehr2010", "204"),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


EQUIVALENT = [
    # (pred, gold, equal?)
    ("0.5", "\\frac{1}{2}", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("\\frac12", "0.5", True),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", True),
    ("10\\text{ cm}", "10", True),  # units stripped
    ("90^\\circ", "90", True),
    ("50\\%", "0.5", True),  # percentage
    ("\\$5.00", "5", True),
    ("1,000", "1000", True),
    ("\\{2, 1\\}", "\\{1,2\\}", True),  # sets are unordered
    ("(1,2)", "(1, 2)", True),
    ("(2,1)", "(1,2)", False),  # tuples/intervals are not
    ("[1,2)", "[1, 2)", True),
    ("x=3", "3", True),
    ("3\\pi", "3\\pi", True),
    ("3", "4", False),
    ("0.5001", "0.5", False),
    ("b", "B", True),  # letters case-insensitive
    ("(B)", "B", True),
    ("\\text{(C)}", "C", True),
    ("C", "B", False),
    ("12", "B", False),
    (None, "3", False),
    ("", "3", False),
    ("3", None, False),
]


@pytest.mark.parametrize("pred,gold,equal", EQUIVALENT)
def test_is_correct(pred, gold, equal):
    assert is_correct(pred, gold) is equal


def test_letters_and_boxes_helpers():
    assert as_letter("**C**") == "C" and as_letter("(d)") == "D" and as_letter("12") is None
    assert last_boxed("a \\boxed{x^{2}} b \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{unclosed") is None
    assert gold_from_reference("Total: \\boxed{30\\text{ km}}.") == "30\\text{ km}"
    assert gold_from_reference("600 * 2 = 1200\n#### 1,200") == "1200"
    assert gold_from_reference(" 401 ") == "401"


# MATH-500-shaped golds written after "The answer is" without $...$ (the hand-written extractor
# graded 352/500 such sentences right); each must grade right, and a perturbed one wrong.
BARE_GOLDS = [
    ("\\frac{14}{3}", "\\frac{13}{3}"), ("6 - 5i", "6 + 5i"), ("p - q", "q - p"), ("3, 5, 7", "3, 5, 8"),
    ("y = 2x + 3", "y = 2x + 4"), ("[-2, 2]", "[-2, 3]"), ("\\{1,2\\}", "\\{1,3\\}"), ("10\\%", "20\\%"),
    ("(1,-2)", "(1,2)"), ("2\\sqrt{2}", "3\\sqrt{2}"), ("\\text{Evelyn}", "\\text{Bob}"), ("1,\\!000", "1,\\!001"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}"),
]


@pytest.mark.parametrize("gold,other", BARE_GOLDS)
@pytest.mark.parametrize("template", ["The answer is {}.", "So the final answer is {}", "Answer: {}"])
def test_bare_answers_grade_against_their_gold(gold, other, template):
    assert is_correct(extract_answer(template.format(gold)), gold)
    assert not is_correct(extract_answer(template.format(other)), gold)
