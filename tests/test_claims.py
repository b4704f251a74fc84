"""The rule that every number stated in prose is computed by code: the checker itself."""
from __future__ import annotations

import nbformat

from grader.claims import prose_numbers, unbacked_numbers


def test_prose_numbers_skip_math_code_small_ints_and_heading_numbers():
    md = ("## 2. Output size\nWith $W=227$ and `F=11` at S=4 the output is 55x55x96, "
          "which needs 34,944 parameters; 224 gives 4.5 <a id='ex10'></a> [see](#ex10).")
    assert prose_numbers(md) == ["55", "55", "96", "34,944", "224", "4.5"]


def test_unbacked_numbers_finds_a_stated_number_that_no_code_produces():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("The output is 55x55x96 with 34,944 parameters, and 290,400 neurons."),
        nbformat.v4.new_code_cell("print((227 - 11) // 4 + 1)"),
        nbformat.v4.new_code_cell("n = 96 * (11 * 11 * 3 + 1)"),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="55\n")]
    nb.cells[2].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "34944"}, execution_count=1)]
    assert unbacked_numbers(nb) == ["cell 0: 290,400"]
