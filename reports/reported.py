"""Published ("reported") numbers, supplied as data files and shown apart from the reproduced rows.

One YAML file per paper (see ``reports/reported/uniadapter.yaml`` and the empty ``template.yaml``)::

    paper: UniAdapter                       # short name, shown after the method when they differ
    results:
      msrvtt:                               # benchmark, as aurora-bench names it (`aurora-bench list benchmarks`)
        uniadapter:                         # method: one reported row
          itm_img_r1: {value: 49.7, source: "UniAdapter abstract (arXiv 2302.06605)"}

Metrics use the names the trials log, so a reported number lands in the column of the same metric.
Only numbers transcribed from a paper belong here; every value carries its source.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PACKAGED = Path(__file__).parent / "reported"
COLUMNS = ["paper", "benchmark", "method", "metric", "value", "source"]


class ReportedError(ValueError):
    """A reported-numbers file that does not follow the format."""


def load_reported(paths: list[str | Path] | None = None) -> pd.DataFrame:
    """Every reported number in ``paths`` (YAML files or folders of them; default: the packaged folder) as
    one row each: paper, benchmark, method, metric, value, source."""
    files = _yaml_files([PACKAGED] if paths is None else paths)
    rows = [row for f in files for row in _read(f)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _yaml_files(paths: list[str | Path]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.yaml"))
        elif p.is_file():
            files.append(p)
        else:
            raise ReportedError(f"{p}: no such file or folder of reported numbers")
    return files


def _read(path: Path) -> list[dict]:
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("results") or {}, dict):
        raise ReportedError(f"{path}: expected a mapping with 'paper' and 'results'")
    paper = str(doc.get("paper") or path.stem)
    rows = []
    for bench, methods in (doc.get("results") or {}).items():
        for method, metrics in _mapping(path, bench, methods).items():
            for metric, entry in _mapping(path, f"{bench}.{method}", metrics).items():
                value, source = _entry(path, f"{bench}.{method}.{metric}", entry)
                rows.append({"paper": paper, "benchmark": str(bench), "method": str(method), "metric": str(metric),
                             "value": value, "source": source})
    return rows


def _mapping(path: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise ReportedError(f"{path}: {where} must be a mapping")
    return value


def _entry(path: Path, where: str, entry) -> tuple[float, str]:
    """-> (value, source); a number without a source is refused."""
    entry = _mapping(path, where, entry)
    value, source = entry.get("value"), entry.get("source")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportedError(f"{path}: {where}.value must be a number, got {value!r}")
    if not isinstance(source, str) or not source.strip():
        raise ReportedError(f"{path}: {where} needs a 'source' (where the number is published)")
    return float(value), source.strip()
