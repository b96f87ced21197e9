"""Write a ``Grid`` as a LaTeX booktabs table (needs only ``\\usepackage{booktabs}``) or as Markdown.

The LaTeX is a float's body (caption, label, tabular), not a float: the paper chooses the environment,
``\\begin{table}[t] \\input{...} \\end{table}`` or ``table*``. It sets no font size, so it is typeset at the
paper's own."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reports.grid import Cell, Column, Grid, Row

_TEX_ESCAPES = {"±": r"$\pm$", "τ": r"$\tau$", "·": r"$\cdot$", "→": r"$\to$", "−": r"$-$", "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%",
                "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def tex(text) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class Style:
    """How one output format spells the pieces of a cell."""

    spread: str  # "{mean}{std}" format: mean +- std
    best: str  # format strings around the mean
    second: str
    down: str  # marks a lower-is-better header
    note: str  # a reported row's source numbers after its label
    escape: object = str


LATEX = Style(spread="{}$_{{\\pm {}}}$", best="\\textbf{{{}}}", second="\\underline{{{}}}", down="$\\downarrow$",
              note="$^{{{}}}$", escape=tex)
MARKDOWN = Style(spread="{} ± {}", best="**{}**", second="<u>{}</u>", down=" ↓", note="<sup>{}</sup>")


def cell_text(cell: Cell, col: Column, style: Style) -> str:
    """``mean ± std`` (the mean alone for one seed, or where LaTeX prints ``mean_only`` columns; a reported
    number as published), the mean marked if it is the column's best or second (LaTeX prints the std as a
    subscript, which keeps tables narrower)."""
    if math.isnan(cell.mean):
        return "--"
    mean = f"{cell.mean:g}" if cell.seeds == 0 else f"{cell.mean:.{col.digits}f}"
    if cell.mark:
        mean = (style.best if cell.mark == "best" else style.second).format(mean)
    spread = cell.seeds > 1 and not (col.mean_only and style is LATEX)
    return style.spread.format(mean, f"{cell.std:.{col.digits}f}") if spread else mean


def header_text(col: Column, style: Style) -> str:
    head = col.tex_header if col.tex_header and style is LATEX else style.escape(col.header)
    return head + ("" if col.higher_is_better else style.down)


def row_cells(row: Row, columns: list[Column], style: Style) -> list[str]:
    label = style.escape(row.stub[0])
    if row.notes:
        label += style.note.format(",".join(map(str, row.notes)))
    return [label, *map(style.escape, row.stub[1:]), *(cell_text(c, col, style) for c, col in zip(row.cells, columns))]


def latex(grid: Grid) -> str:
    """A float's body: caption, label, a two-level header (groups over metrics), the reproduced rows, then a
    block of reported rows under its own rule and label, and the reported numbers' sources below."""
    stub, columns = len(grid.stub_headers), grid.columns
    width = stub + len(columns)
    lines = [f"% {grid.title}: the body of a float, for \\begin{{table}} \\input{{...}} \\end{{table}} (or table*)",
             f"\\caption{{{tex(grid.caption)}}}", f"\\label{{{grid.label}}}", "\\centering",
             "\\setlength{\\tabcolsep}{4pt}",  # local to the float; 2pt less a side lets 9 columns fit 5.5in
             f"\\begin{{tabular}}{{@{{}}l{'r' * (stub - 1 + len(columns))}@{{}}}}", "\\toprule",
             *_latex_head(grid, stub), "\\midrule"]
    if grid.reported:
        lines.append(f"\\multicolumn{{{width}}}{{@{{}}l}}{{\\textit{{Reproduced}}}} \\\\")
    lines += [" & ".join(row_cells(r, columns, LATEX)) + " \\\\" for r in grid.rows]
    if grid.reported:
        lines += ["\\midrule", f"\\multicolumn{{{width}}}{{@{{}}l}}{{\\textit{{Reported (published numbers)}}}} \\\\"]
        lines += [" & ".join(row_cells(r, columns, LATEX)) + " \\\\" for r in grid.reported]
    lines += ["\\bottomrule", "\\end{tabular}"]
    if grid.sources:
        notes = "; ".join(f"$^{{{i}}}${tex(s)}" for i, s in enumerate(grid.sources, 1))
        lines += ["\\par\\smallskip", f"\\parbox{{\\linewidth}}{{\\footnotesize Reported: {notes}}}"]
    return "\n".join([*lines, ""])


def _latex_head(grid: Grid, stub: int) -> list[str]:
    """The spanning headers (with a rule under each named one) over the column headers; none if unnamed."""
    spans, rules, start = [], [], stub + 1
    for text, n in grid.spans():
        spans.append(f"\\multicolumn{{{n}}}{{c}}{{{tex(text)}}}" if text else " & ".join([""] * n))
        if text:
            rules.append(f"\\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    names = [*map(tex, grid.stub_headers), *(header_text(c, LATEX) for c in grid.columns)]
    top = [" & " * stub + " & ".join(spans) + " \\\\", " ".join(rules)] if rules else []
    return [*top, " & ".join(names) + " \\\\"]


def markdown(grid: Grid) -> str:
    """The same table in Markdown: headers "group metric" (the group: a benchmark, or in a one-benchmark table
    the column's own), reported rows after a labelled separator row."""
    columns = grid.columns
    groups = [text for text, n in grid.spans() for _ in range(n)]
    heads = [*grid.stub_headers, *(f"{g} {header_text(c, MARKDOWN)}".strip() for g, c in zip(groups, columns))]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(row_cells(r, columns, MARKDOWN)) + " |" for r in grid.rows]
    if grid.reported:
        lines.append("| *reported* |" + " |" * (len(heads) - 1))
        lines += ["| " + " | ".join(row_cells(r, columns, MARKDOWN)) + " |" for r in grid.reported]
    lines += [f"\n<sup>{i}</sup> {s}" for i, s in enumerate(grid.sources, 1)]
    return "\n".join(lines)
