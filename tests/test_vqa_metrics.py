"""VQA accuracy, against hand-computed values: the normalisation steps and the leave-one-out average of the
current official scorer (GT-Vision-Lab/VQA vqaEval.py, ``scorer="official"``, the default) and of the older
one LAVIS copies (``scorer="lavis"``)."""

import pytest

from suites.benchmarks import BENCHMARKS, VQABenchmark
from suites.tasks.metrics import VQA_SCORERS, vqa_accuracy, vqa_digit_article, vqa_normalize, vqa_punctuation
from suites.tasks.vqa import score

BOTH = pytest.mark.parametrize("scorer", VQA_SCORERS)


def ten(answer: str, matches: int, other: str = "blue") -> list[str]:
    return [answer] * matches + [other] * (10 - matches)


# ---------------------------------------------------------------- what both scorers share


@BOTH
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
def test_leave_one_out_average(matches, expected, scorer):
    assert vqa_accuracy("red", ten("red", matches), scorer) == pytest.approx(expected)


@BOTH
def test_official_values(scorer):
    assert vqa_accuracy("red", ten("red", 2), scorer) == pytest.approx(0.6)
    assert vqa_accuracy("red", ten("red", 3), scorer) == pytest.approx(0.9)
    assert vqa_accuracy("red", ten("red", 1), scorer) == pytest.approx(0.3)


@BOTH
def test_any_number_of_answers(scorer):
    # 3 answers, 2 match: leaving out a match gives 1/3 (twice), leaving out the other gives 2/3
    assert vqa_accuracy("yes", ["yes", "yes", "no"], scorer) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert vqa_accuracy("yes", ["yes"], scorer) == 0.0  # the only answer is always the one left out
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [], scorer)


def test_unknown_scorer():
    with pytest.raises(ValueError, match="scorer"):
        vqa_accuracy("yes", ten("yes", 10), scorer="vqa")
    with pytest.raises(ValueError, match="scorer"):
        vqa_normalize("yes", scorer="LAVIS")


@BOTH
@pytest.mark.parametrize("raw, normalized", [
    ("Two", "2"),
    ("none", "0"),
    ("ten", "10"),
    ("the red one", "red 1"),
    ("A dog.", "dog"),
    ("An apple", "apple"),
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("couldn'tve", "couldn't've"),
    ("well", "well"),  # in neither map
    ("its", "its"),
    ("yes!", "yes"),
    ("yes ?", "yes"),  # a mark next to a space is deleted
    ("black-and-white", "black and white"),  # otherwise it becomes a space
    ("2.5", "2.5"),  # a period before a digit stays
    ("1,000", "1000"),  # digit-comma-digit: every mark is deleted
    ("  Red\tcar\n", "red car"),
    ("Red", "red"),
])
def test_normalisation(raw, normalized, scorer):
    assert vqa_normalize(raw, scorer) == normalized


@BOTH
def test_punctuation_step(scorer):
    assert vqa_punctuation("a,b", scorer) == "a b"  # no space beside it: the comma becomes a space
    assert vqa_punctuation("a, b", scorer) == "a b"  # a space after it: deleted
    assert vqa_punctuation("end.", scorer) == "end"  # a trailing period goes
    assert vqa_punctuation("5.", scorer) == "5"  # ... even after a digit (the lookbehind is mistyped)
    assert vqa_punctuation("2.5", scorer) == "2.5"  # a period before a digit stays
    assert vqa_punctuation("1,000", scorer) == "1000"
    # a digit-comma-digit anywhere deletes every mark, even ones that would have become spaces
    assert vqa_punctuation("1,000 black-cats!", scorer) == "1000 blackcats"
    assert vqa_punctuation("black-cats!", scorer) == "black cats "


# ---------------------------------------------------------------- the current official scorer


def test_official_contraction_map():
    # "shed" is no key of the official dictionary (only "shed've" is), so it stays "shed"
    assert vqa_normalize("shed") == "shed"
    assert vqa_normalize("shedve") == "shedve"
    assert vqa_normalize("shed've") == "she'd've"
    assert vqa_normalize("couldntve") == "couldntve"  # the dictionary has "couldnt've" and "couldn'tve" only
    assert vqa_normalize("couldnt've") == "couldn't've"
    assert vqa_normalize("shes") == "shes"  # its key is "she's" (mapped to itself)
    assert vqa_normalize("somebody'd") == "somebodyd"  # the dictionary's one backwards entry
    assert vqa_normalize("Im") == "im"  # capitalised keys never match: words are lowercased first
    assert vqa_normalize("twas") == "'twas"
    assert vqa_digit_article("The Two dogs") == "2 dogs"


def test_shed_matches_shed():
    assert vqa_accuracy("shed", ten("shed", 10)) == 1.0
    assert vqa_accuracy("shed", ten("shed", 3, "barn")) == pytest.approx(0.9)
    assert vqa_accuracy("Shed.", ten("shed", 4, "barn")) == 1.0


def test_dont_via_the_official_map():
    assert vqa_accuracy("dont", ten("don't", 4, "no")) == 1.0
    # the answers are normalised too (they disagree), so an answer "dont" matches a prediction "don't"
    assert vqa_accuracy("don't", ten("dont", 4, "no")) == 1.0


def test_number_words():
    assert vqa_accuracy("two", ten("2", 3, "3")) == pytest.approx(0.9)
    assert vqa_accuracy("2", ten("two", 3, "3")) == pytest.approx(0.9)
    assert vqa_accuracy("none", ten("0", 4, "1")) == 1.0


def test_articles_removed():
    # answers "a dog", "a dog", "dog" all become "dog": 3 matches -> (3 * 2/3 + 7 * 1) / 10 = 0.9
    assert vqa_accuracy("the dog", ["a dog", "a dog", "dog"] + ["cat"] * 7) == pytest.approx(0.9)


def test_punctuation_in_accuracy():
    assert vqa_accuracy("1000", ten("1,000", 3, "cat")) == pytest.approx(0.9)
    assert vqa_accuracy("1,000", ten("1000", 4, "cat")) == 1.0
    assert vqa_accuracy("yes.", ten("yes", 3, "no")) == pytest.approx(0.9)  # trailing period stripped
    assert vqa_accuracy("dog", ten("dog!", 4, "cat")) == 1.0  # "dog!" -> "dog " -> "dog" after the split


def test_official_normalises_nothing_when_the_answers_agree():
    # the official code normalises the answers AND the prediction only when the (whitespace-stripped)
    # answers are not all the same; when they agree, the prediction is compared as it is
    assert vqa_accuracy("yes.", ten("yes", 10)) == 0.0
    assert vqa_accuracy("Yes", ten("yes", 10)) == 0.0
    assert vqa_accuracy("two", ten("2", 10)) == 0.0
    assert vqa_accuracy("  yes\n", ten("yes", 10)) == 1.0  # whitespace is always stripped
    assert vqa_accuracy("yes", [" yes", "yes\t"] + ["yes"] * 8) == 1.0  # answers stripped before comparing


def test_official_period_limit():
    # periodStrip.sub("", text, re.UNICODE) passes re.UNICODE (32) as the count: 40 periods leave 8
    assert vqa_punctuation("." * 40) == "." * 8
    assert vqa_punctuation("." * 40, "lavis") == ""


def test_leave_one_out_hand_computed():
    # 10 answers that, normalised, read 2 2 3 3 3 4 4 4 0 0; the prediction "Two" becomes "2".
    answers = ["two", "2", "3", "three", "3", "4", "four", "4", "none", "0"]
    # official: 2 matches. Leaving out either "2" leaves 1 match: min(1, 1/3) = 1/3 (twice); leaving out any
    # of the 8 others leaves 2 matches: 2/3 (8 times). (2 * 1/3 + 8 * 2/3) / 10 = (18/3) / 10 = 0.6
    assert vqa_accuracy("Two", answers) == pytest.approx(0.6)
    # an answer set where a match count of 4 still scores 1 per left-out answer
    assert vqa_accuracy("Two", ["two", "2", "Two", "TWO."] + ["3"] * 6) == 1.0


# ---------------------------------------------------------------- where the two scorers differ


def test_official_and_lavis_differ():
    answers = ["two", "2", "3", "three", "3", "4", "four", "4", "none", "0"]
    # official: answers normalised to 2 2 3 3 3 4 4 4 0 0, prediction "2": 2 matches ->
    #   (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    # lavis: answers only get the punctuation step ("two" stays "two"), prediction "2": 1 match ->
    #   leaving out the "2" leaves 0 matches: 0; leaving out any of the 9 others leaves 1: 1/3 ->
    #   (1 * 0 + 9 * 1/3) / 10 = 0.3
    assert vqa_accuracy("2", answers, "official") == pytest.approx(0.6)
    assert vqa_accuracy("2", answers, "lavis") == pytest.approx(0.3)

    answers = ["dog", "dog", "the dog", "dogs", "dogs", "dogs", "cat", "cat", "cat", "cat"]
    # prediction "A Dog!": "!" has no space beside it, so it becomes a space: "A Dog " -> "dog" (both).
    # official: "the dog" -> "dog", 3 matches -> (3 * 2/3 + 7 * 1) / 10 = 0.9
    # lavis: "the dog" stays, 2 matches -> (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    assert vqa_accuracy("A Dog!", answers, "official") == pytest.approx(0.9)
    assert vqa_accuracy("A Dog!", answers, "lavis") == pytest.approx(0.6)


def test_shed_under_lavis():
    # the generated map turns the prediction "shed" into "she'd", which no answer "shed" equals
    assert vqa_normalize("shed", "lavis") == "she'd"
    assert vqa_accuracy("shed", ten("shed", 10), "lavis") == 0.0  # official: 1.0
    assert vqa_accuracy("shed", ten("shed", 3, "barn"), "lavis") == 0.0  # official: 0.9


def test_lavis_contraction_map():
    assert vqa_normalize("couldntve", "lavis") == "couldn't've"  # every apostrophe-less spelling
    assert vqa_normalize("shes", "lavis") == "she's"
    assert vqa_normalize("somebodyd", "lavis") == "somebody'd"


def test_lavis_normalises_the_prediction_fully_and_answers_only_for_punctuation():
    assert vqa_accuracy("Two.", ten("2", 10), "lavis") == 1.0  # official: 0.0 (answers agree: no processing)
    assert vqa_accuracy("the dog", ten("dog", 4), "lavis") == 1.0
    # answers that agree are taken as they are: an unnormalised ground truth does not match
    assert vqa_accuracy("2", ten("two", 10), "lavis") == 0.0
    # answers that disagree get the punctuation step only: "1,000" -> "1000", but "Two" keeps its capital
    assert vqa_accuracy("1000", ["1,000"] * 3 + ["cat"] * 7, "lavis") == pytest.approx(0.9)
    assert vqa_accuracy("two", ["Two"] * 5 + ["cat"] * 5, "lavis") == 0.0  # official: 1.0
    # "dog!" becomes "dog " (the mark turns into a space) and no longer matches
    assert vqa_accuracy("dog", ["dog!"] * 5 + ["cat"] * 5, "lavis") == 0.0  # official: 1.0
    assert vqa_accuracy("don't", ten("dont", 4, "no"), "lavis") == 0.0  # official: 1.0


# ---------------------------------------------------------------- the benchmark's vqa_scorer setting


def test_score_passes_the_scorer():
    answers = ["two", "2", "3", "three", "3", "4", "four", "4", "none", "0"]
    assert score("2", answers, "vqa") == pytest.approx(0.6)
    assert score("2", answers, "vqa", "official") == pytest.approx(0.6)
    assert score("2", answers, "vqa", "lavis") == pytest.approx(0.3)
    # exact match (MSRVTT-QA) is unchanged and ignores the scorer
    assert score("two", ["two"], "exact") == 1.0
    assert score("Two", ["two"], "exact", "official") == 0.0
    assert score("two", ["two"], "exact", "lavis") == 1.0


def test_benchmark_vqa_scorer_setting():
    vqa_names = [n for n in BENCHMARKS.names() if BENCHMARKS.get(n)().task == "vqa"]
    assert vqa_names
    for name in vqa_names:
        bench = BENCHMARKS.get(name)()
        assert bench.vqa_scorer == "official" and "vqa_scorer" in bench.task_settings
        assert bench.task_config()["vqa_scorer"] == "official"
        assert BENCHMARKS.get(name)(vqa_scorer="lavis").task_config()["vqa_scorer"] == "lavis"
    assert VQABenchmark(vqa_scorer="lavis").vqa_scorer == "lavis"
    with pytest.raises(ValueError, match="vqa_scorer"):
        VQABenchmark(vqa_scorer="blip")
