"""Reading real-tier data: root folders, JSON annotation files and media paths, each failing with one
``DataError`` line that names the path and the expected layout. Registers no benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path

from suites.benchmarks import DataError


def data_roots(benchmark: str, data_root: str, dataset: str, layout: str, **roots: tuple[str, str]) -> list[Path]:
    """The folders a benchmark reads, in the order given: ``name=(override, default under
    <data_root>/<dataset>)``. Either ``data_root`` or every override must be set."""
    overrides = {name: given for name, (given, _) in roots.items()}
    if not (data_root or all(overrides.values())):
        raise DataError(f"benchmark {benchmark!r} needs its data: pass data_root=DIR (or "
                        f"{' and '.join(roots)}); expected layout: {layout}")
    base = Path(data_root or ".").expanduser() / dataset
    return [Path(given).expanduser() if given else base / default for given, default in roots.values()]


def read_json(path: Path, layout: str, kind: type = list):
    """A JSON file of the expected top-level type, non-empty."""
    if not path.is_file():
        raise DataError(f"missing annotation file {path}; expected layout: {layout}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); expected layout: {layout}") from None
    if not isinstance(data, kind) or not data:
        raise DataError(f"{path} must be a non-empty JSON {kind.__name__}; expected layout: {layout}")
    return data


def media_path(root: Path, rel: str, layout: str, what: str = "image") -> str:
    """``root/rel``, else ``root/<base name of rel>``: BLIP's files join the relative path, Aurora's and
    UniAdapter's folders keep only the base name; both layouts are accepted."""
    for candidate in (root / rel, root / os.path.basename(rel)):
        if candidate.is_file():
            return str(candidate)
    raise DataError(f"missing {what} {root / rel} (also tried {root / os.path.basename(rel)}); expected layout: {layout}")


def require_fields(record, fields: dict[str, type | tuple[type, ...]], where: str, layout: str) -> None:
    """Each named field present with the given type(s)."""
    for name, kind in fields.items():
        if not isinstance(record, dict) or not isinstance(record.get(name), kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise DataError(f"{where} needs a field {name!r} of type {'/'.join(k.__name__ for k in kinds)}; "
                            f"expected layout: {layout}")
