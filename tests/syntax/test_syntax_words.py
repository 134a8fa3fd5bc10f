"""word_completion: when a fill finishes the cursor's word into one that no document spells."""

from __future__ import annotations

from infill_server.syntax import word_completion
from infill_server.syntax.words import MAX_DOCUMENT_CHARS, language_words

PERIODS = "day_period_values = load()\nday_position = 0\nprint(day_period_values)\n"


def test_a_fill_that_finishes_the_word_into_an_unknown_one_needs_the_documents_word() -> None:
    needs = word_completion(PERIODS + "x = day_pe", "\n", "python")
    assert needs is not None
    assert needs("riod_vals)") == "riod_values", "day_period_vals is nowhere in the document"
    assert needs("riod_values)") == "", "the document spells it"
    assert needs("riod") == "riod_values", "a word cut short is a word the document lacks too"


def test_no_typed_word_or_no_longer_word_in_the_document_asks_for_nothing() -> None:
    assert word_completion(PERIODS + "x = ", "\n", "python") is None, "the cursor ends no word"
    assert word_completion(PERIODS + "x = 12", "\n", "python") is None, "a number is no name"
    assert word_completion(PERIODS + "x = zeta", "\n", "python") is None, "nothing begins with zeta"
    assert word_completion("x = day_period_values", "\n", "python") is None, "the word at the cursor is no match"


def test_the_most_frequent_word_wins_then_the_nearest() -> None:
    needs = word_completion(PERIODS + "x = day_p", "\n", "python")
    assert needs is not None and needs("ace") == "eriod_values", "day_period_values twice, day_position once"
    near = word_completion("alpha_one = 1\nalpha_two = 2\nx = alpha_", "\nalpha_three = 3\n", "python")
    assert near is not None and near("zzz") == "three", "three characters after the cursor beat two lines up"
    before = word_completion("alpha_one = 1\nalpha_two = 2\nx = alpha_", "\n" * 30 + "alpha_three = 3\n", "python")
    assert before is not None and before("zzz") == "two"


def test_keywords_builtins_and_other_open_documents_are_known_words() -> None:
    needs = word_completion("results = []\nx = re", "\n", "python", others=("def register(): pass\n",))
    assert needs is not None
    assert needs("turn x") == "", "return is a Python keyword"
    assert needs("pr(x)") == "", "repr is a Python builtin"
    assert needs("gister()") == "", "another open document spells register"
    assert needs("sultz") == "sults"
    js = word_completion("const results = [];\nx = re", "\n", "javascript")
    assert js is not None and js("turn x;") == "" and js("pr(x)") == "sults", "no Python builtins in JavaScript"
    assert {"def", "return", "lambda"} <= language_words("python")
    assert {"function", "return", "const"} <= language_words("javascript")
    assert language_words(None) == frozenset()


def test_names_with_dollars_and_non_ascii_letters() -> None:
    needs = word_completion("const $scope = 1;\nconst größe = 2;\nx = $sc", "\n", "javascript")
    assert needs is not None and needs("ale") == "ope"
    grosse = word_completion("const größe = 2;\nx = grö", "\n", "javascript")
    assert grosse is not None and grosse("ßer") == "ße" and grosse("ße;") == ""


def test_a_huge_document_is_read_only_so_far_each_way() -> None:
    far = "far_away_name = 1\n" + "x = 0\n" * (MAX_DOCUMENT_CHARS // 6 + 10)
    assert word_completion(far + "y = far_aw", "\n", "python") is None, "beyond the characters read"
    assert word_completion("y = fa", "\n" + "x = 0\n" * (MAX_DOCUMENT_CHARS // 6 + 10) + "far_away = 1\n",
                           "python") is None
