import pytest

from tunesmith.evaluation.exact_match import final_answer, is_correct, score_exact_match


@pytest.mark.parametrize(
    "output, reference, expected",
    [
        ("3 + 4 = 7\n#### 7", "7", True),
        ("The answer is 7.", "7", True),  # no ####: the last number counts
        ("#### 1,200", "1200", True),
        ("3 + 4 = 8\n#### 8", "7", False),
        ("no number here", "7", False),
        ("nretnal", "nretnal", True),
        ("Here it is:\nnretnal", "nretnal", True),
        ("7, 42, 19", "7, 19, 42", False),  # text answers are compared whole, not by last number
        ("#### HELLO WORLD", "HELLO WORLD", True),
    ],
)
def test_is_correct(output, reference, expected):
    assert is_correct(output, reference) is expected


def test_final_answer_and_batch_scoring():
    assert final_answer("a\nb\n#### c") == "c"
    assert final_answer("  \n") == ""
    assert score_exact_match(["#### 12", "it is 7"], ["12", "8"]) == [True, False]
