"""Does a report table fit the paper? Each ``.tex`` file is compiled with pdflatex inside ``table`` and
``table*`` floats of a 10 pt article at a 5.5 in text width (NeurIPS' single column), and every
"Overfull \\hbox" of the log is a failure: the table is wider than the text.

``python -m reports.texcheck outputs/reports/*.tex`` prints one line per table and exits 1 if any does not fit.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

TEXT_WIDTH = "5.5in"  # NeurIPS: \textwidth 5.5in, 10 pt type
FONT_SIZE = "10pt"
FLOATS = ("table", "table*")  # each table must work in both, as the README tells users to input it

DOCUMENT = r"""\documentclass[%(size)s]{article}
\usepackage{booktabs}
\setlength{\textwidth}{%(width)s}
\setlength{\columnwidth}{\textwidth}
\setlength{\linewidth}{\textwidth}
\begin{document}
%(floats)s
\end{document}
"""


class TexError(RuntimeError):
    """pdflatex is missing, or failed on a table (the message holds the end of its log)."""


def overfull_boxes(table: Path, width: str = TEXT_WIDTH, size: str = FONT_SIZE) -> list[str]:
    """The "Overfull \\hbox" lines pdflatex logs for ``table`` set in each float of ``FLOATS`` at ``width``
    (empty: it fits). Raises TexError if pdflatex is missing or stops on an error."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise TexError("pdflatex is not installed (Debian: texlive-latex-base and texlive-latex-recommended)")
    floats = "\n".join(f"\\begin{{{env}}}[h]\n\\input{{{Path(table).resolve().as_posix()}}}\n\\end{{{env}}}"
                       for env in FLOATS)
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "fit.tex"
        doc.write_text(DOCUMENT % {"size": size, "width": width, "floats": floats})
        done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp,
                              capture_output=True, text=True, timeout=120)
        log = (Path(tmp) / "fit.log").read_text(errors="replace") if (Path(tmp) / "fit.log").exists() else ""
    if done.returncode != 0:
        raise TexError(f"pdflatex failed on {table}:\n{(log or done.stdout)[-3000:]}")
    return re.findall(r"^Overfull \\hbox .*$", log, flags=re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that report tables fit a 10 pt, 5.5 in text width.")
    parser.add_argument("tables", nargs="+", type=Path, metavar="TABLE.tex")
    parser.add_argument("--width", default=TEXT_WIDTH, help=f"text width (default {TEXT_WIDTH})")
    args = parser.parse_args(argv)
    too_wide = 0
    for table in args.tables:
        boxes = overfull_boxes(table, args.width)
        too_wide += bool(boxes)
        print(f"{table}: {'fits' if not boxes else 'TOO WIDE: ' + '; '.join(boxes)}")
    return 1 if too_wide else 0


if __name__ == "__main__":
    raise SystemExit(main())
