"""The official VQA accuracy: normalisation and the leave-one-out average, against hand-computed values."""

import pytest

from suites.tasks.metrics import vqa_accuracy, vqa_normalize, vqa_punctuation


def ten(answer: str, matches: int, other: str = "blue") -> list[str]:
    return [answer] * matches + [other] * (10 - matches)


@pytest.mark.parametrize("matches, expected", [
    # m matches among 10: leaving out one of the m leaves m-1, leaving out another leaves m, so the average
    # is (m * min((m-1)/3, 1) + (10-m) * min(m/3, 1)) / 10.
    (0, 0.0),
    (1, (1 * 0 + 9 * (1 / 3)) / 10),  # 0.3
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
    (3, (3 * (2 / 3) + 7 * 1) / 10),  # 0.9
    (4, 1.0),
    (10, 1.0),
])
def test_leave_one_out_average(matches, expected):
    assert vqa_accuracy("red", ten("red", matches)) == pytest.approx(expected)


def test_official_values():
    assert vqa_accuracy("red", ten("red", 2)) == pytest.approx(0.6)
    assert vqa_accuracy("red", ten("red", 3)) == pytest.approx(0.9)
    assert vqa_accuracy("red", ten("red", 1)) == pytest.approx(0.3)


def test_any_number_of_answers():
    # 3 answers, 2 match: leaving out a match gives 1/3 (twice), leaving out the other gives 2/3
    assert vqa_accuracy("yes", ["yes", "yes", "no"]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert vqa_accuracy("yes", ["yes"]) == 0.0  # the only answer is always the one left out
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])


@pytest.mark.parametrize("raw, normalized", [
    ("Two", "2"),
    ("none", "0"),
    ("the red one", "red 1"),
    ("A dog.", "dog"),
    ("An apple", "apple"),
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("couldntve", "couldn't've"),
    ("couldn'tve", "couldn't've"),
    ("well", "well"),  # not a contraction the scorer restores
    ("its", "its"),
    ("yes!", "yes"),
    ("yes ?", "yes"),  # a mark next to a space is deleted
    ("black-and-white", "black and white"),  # otherwise it becomes a space
    ("2.5", "2.5"),  # a period before a digit stays
    ("1,000", "1000"),  # digit-comma-digit: every mark is deleted
    ("  Red\tcar\n", "red car"),
    ("Red", "red"),
])
def test_prediction_normalisation(raw, normalized):
    assert vqa_normalize(raw) == normalized


def test_prediction_is_normalised_fully_answers_only_for_punctuation():
    assert vqa_accuracy("Two.", ten("2", 10)) == 1.0
    assert vqa_accuracy("the dog", ten("dog", 4)) == 1.0
    # answers that agree are taken as they are: an unnormalised ground truth does not match
    assert vqa_accuracy("2", ten("two", 10)) == 0.0
    # answers that disagree get the punctuation step only: "1,000" -> "1000", but "Two" keeps its capital
    assert vqa_accuracy("1000", ["1,000"] * 3 + ["cat"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("two", ["Two"] * 5 + ["cat"] * 5) == 0.0
    # as in the official scorer, "dog!" becomes "dog " (the mark turns into a space) and no longer matches
    assert vqa_accuracy("dog", ["dog!"] * 5 + ["cat"] * 5) == 0.0


def test_punctuation_step():
    assert vqa_punctuation("a,b") == "a b"
    assert vqa_punctuation("a, b") == "a b"
    assert vqa_punctuation("end.") == "end"
