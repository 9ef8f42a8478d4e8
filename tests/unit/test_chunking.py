"""Chunking of files and diffs for review (no I/O)."""

from __future__ import annotations

import pytest

from agents.chunking import (
    Chunk,
    FileDiff,
    blank_cut_points,
    estimate_tokens,
    line_cost,
    near,
    numbered,
    parse_unified_diff,
    python_cut_points,
    split_code,
    split_diff,
    split_lines,
)


def test_lines_are_numbered_as_ast_and_ruff_count_them() -> None:
    assert numbered("a\r\nb\n") == [(1, "a"), (2, "b")]
    assert numbered("a\n\n") == [(1, "a"), (2, "")]
    assert numbered("only") == [(1, "only")]
    assert estimate_tokens("abcde") == 2
    assert line_cost("abcd") == 3  # one token of text, two for the line number


def test_a_small_file_is_one_chunk() -> None:
    [chunk] = split_code("x = 1\ny = 2\n", 100, language="python")
    assert (chunk.first, chunk.last, chunk.changed) == (1, 2, frozenset())
    assert chunk.shows(2) and not chunk.shows(3)


PYTHON = '''\
import os


@decorator
def first():
    """Doc."""
    return os.getcwd()


class Second:
    value = """
def not_a_function():
"""

    def method(self):
        return 1


def third():
    return 3
'''


def test_python_cut_points_follow_top_level_definitions() -> None:
    preferred, acceptable = python_cut_points(PYTHON)
    assert preferred == {4, 10, 19}  # from the decorator; never inside the string
    assert acceptable == {1, 4, 10, 19}
    assert python_cut_points("def broken(:\n") == (set(), set())


def test_python_is_cut_before_definitions_and_within_budget() -> None:
    budget = 45
    chunks = split_code(PYTHON, budget, language="python")
    assert [c.first for c in chunks] == [1, 10, 19]  # never inside the class
    assert [line for c in chunks for line, _ in c.lines] == list(range(1, 21))
    for chunk in chunks:
        assert sum(line_cost(text) for _, text in chunk.lines) <= budget


def test_a_cut_keeps_chunks_at_least_half_full() -> None:
    lines = [(n, "x" * 8) for n in range(1, 21)]  # 4 tokens each
    chunks = split_lines(lines, 40, preferred={2, 9})
    assert [c.first for c in chunks][:2] == [1, 9]  # 2 would leave the chunk nearly empty
    assert [c.first for c in split_lines(lines, 40)] == [1, 11]  # no point: cut at the budget


def test_a_line_longer_than_the_budget_is_a_chunk_of_its_own() -> None:
    lines = [(1, "a"), (2, "b" * 400), (3, "c")]
    assert [[n for n, _ in c.lines] for c in split_lines(lines, 10)] == [[1], [2], [3]]
    with pytest.raises(ValueError, match="at least 1 token"):
        split_lines(lines, 0)


def test_other_languages_are_cut_at_paragraphs() -> None:
    code = "".join(f"function f{i}() {{\n  return {i};\n}}\n\n" for i in range(6))
    lines = numbered(code)
    assert blank_cut_points(lines) == {5, 9, 13, 17, 21}
    chunks = split_code(code, 30, language="javascript")
    assert len(chunks) > 1
    assert all(c.lines[0][1].startswith("function") for c in chunks)


DIFF = """\
diff --git a/app/mod.py b/app/mod.py
index 1111111..2222222 100644
--- a/app/mod.py
+++ b/app/mod.py
@@ -1,4 +1,5 @@ def header():
 a = 1
-b = 2
+b = 3
+c = 4
 d = 5
 --- not a header = 0
@@ -20,3 +21,2 @@
 x = 1
-y = 2
 z = 3
\\ No newline at end of file
--- a/other.js
+++ b/other.js
@@ -0,0 +1 @@
+++counter;
"""


def test_a_unified_diff_gives_new_lines_and_changes_per_file() -> None:
    mod, other = parse_unified_diff(DIFF)
    assert mod.path == "app/mod.py"
    assert mod.lines == {
        1: "a = 1",
        2: "b = 3",
        3: "c = 4",
        4: "d = 5",
        5: "--- not a header = 0",
        21: "x = 1",
        22: "z = 3",
    }
    assert mod.changed == {2, 3, 22}  # a deletion marks the line now in its place
    assert (other.path, other.lines, other.changed) == ("other.js", {1: "++counter;"}, {1})


def test_a_diff_without_hunks_is_refused() -> None:
    with pytest.raises(ValueError, match="no hunk"):
        parse_unified_diff("--- a/x\n+++ b/x\n")
    [bare] = parse_unified_diff("@@ -1 +1 @@\n-a\n+b\n")
    assert (bare.path, bare.lines, bare.changed) == (None, {1: "b"}, {1})


def test_a_diff_shows_its_regions_or_the_new_file_around_changes() -> None:
    [mod, _] = parse_unified_diff(DIFF)
    [chunk] = split_diff(mod, 1000)
    assert [n for n, _ in chunk.lines] == [1, 2, 3, 4, 5, 21, 22]
    assert chunk.changed == {2, 3, 22}

    new_file = [(n, mod.lines.get(n, f"line {n}")) for n in range(1, 23)]
    assert mod.matches(new_file)
    assert not mod.matches([(1, "something else")])
    [chunk] = split_diff(mod, 1000, new_file=new_file, context=2)
    assert [n for n, _ in chunk.lines] == [1, 2, 3, 4, 5, 20, 21, 22]

    first, second = split_diff(mod, 23, new_file=new_file, context=2)
    assert (first.first, second.first) == (1, 20)  # cut where a region starts
    assert (first.changed, second.changed) == (frozenset({2, 3}), frozenset({22}))


def test_near_and_chunk_span() -> None:
    assert near({1, 10}, 2) == {1, 2, 3, 8, 9, 10, 11, 12}
    chunk = Chunk(((3, "a"), (7, "b")))
    assert chunk.shows(5) and not chunk.shows(8)
    assert FileDiff("x").lines == {}
