"""Write a notebook from a list of (kind, source) cells: the one way notebooks are (re)generated.

Usage inside a generator script: ``write_notebook(path, cells)`` where each cell is
("md", text), ("code", text) or ("params", text) — the latter tagged ``parameters``.
Outputs are always empty, so committed notebooks are stripped by construction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def write_notebook(path: str | Path, cells: list[tuple[str, str]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, (kind, src) in enumerate(cells):
        src = src.strip("\n")
        if kind == "md":
            c = nbformat.v4.new_markdown_cell(src)
        else:
            c = nbformat.v4.new_code_cell(src)
            if kind == "params":
                c.metadata["tags"] = ["parameters"]
        c.id = f"c{i:02d}"
        nb.cells.append(c)
    nbformat.validate(nb)
    path = Path(__file__).resolve().parent.parent / path
    path.write_text(nbformat.writes(nb) + "\n")


if __name__ == "__main__":
    sys.exit("import this module from a notebook generator script")
