"""Every number a notebook's prose states must be computed by code in that notebook.

:func:`unbacked_numbers` lists the numbers in markdown prose (outside ``$…$`` math, ``code`` spans, HTML
tags and link targets) that appear neither in any code cell's source nor in any output of the executed
notebook. Integers below 10 are exempt (hyperparameters such as F=3, S=2 are inputs, not claims);
decimals and larger integers are claims. ``55x55x96`` counts as three numbers, ``34,944`` as one. Points are
not claims about the material (tests/test_notebooks.py checks that they add up): ``**Points: N**`` and any
parenthesis that speaks of points, "(3.5 points: 3 for the columns, ½ for the dtype)", are left out.
"""
from __future__ import annotations

import re

import nbformat

_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_TAGS = re.compile(r"<[^>]+>")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_HEADING_NUMBER = re.compile(r"^(#+\s*)(?:\d+(?:\.\d+)*\.?\s)", re.M)
_TIMES = re.compile(r"(?<=\d)\s*[x×]\s*(?=\d)")
_POINTS = re.compile(r"\*\*Points: [\d.]+\*\*|\([^()]*\bpoints?\b[^()]*\)")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d])")


def _values(text: str) -> set[float]:
    text = _TIMES.sub(" x ", text)
    values = set()
    for token in _NUMBER.findall(text):
        values.add(float(token.replace(",", "")))
    return values


def prose_numbers(markdown: str) -> list[str]:
    """The number tokens of a markdown cell that count as claims."""
    text = _POINTS.sub(" ", _CODE.sub(" ", _MATH.sub(" ", markdown)))
    text = _LINK_TARGET.sub("]", _TAGS.sub(" ", text))
    text = _TIMES.sub(" x ", _HEADING_NUMBER.sub(r"\1", text))
    claims = []
    for token in _NUMBER.findall(text):
        value = float(token.replace(",", ""))
        if "." in token or value >= 10:
            claims.append(token)
    return claims


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data[k]) for k in ("text/plain", "text/markdown", "text/html") if k in data)


def unbacked_numbers(executed: nbformat.NotebookNode) -> list[str]:
    """Numbers stated in prose that no code cell computes or mentions, as 'cell N: token' strings."""
    backed: set[float] = set()
    for cell in executed.cells:
        if cell.cell_type == "code":
            backed |= _values(cell.source)
            for output in cell.get("outputs", []):
                backed |= _values(_output_text(output))
    missing = []
    for index, cell in enumerate(executed.cells):
        if cell.cell_type != "markdown":
            continue
        for token in prose_numbers(cell.source):
            if float(token.replace(",", "")) not in backed:
                missing.append(f"cell {index}: {token}")
    return missing
