"""Readable method labels for tables and plots: "LoRA (r=4)", "Aurora (R=8, CP)", "Full fine-tuning".

By default a label is the method's display name and its key options, read from the options each run logged
(the frame's ``option.<name>`` columns); a labels mapping overrides it. Its keys are table rows (``aurora-r16``)
or registry methods (``lora``), its values label templates filled with the row's options::

    lora: "LoRA r={r}"              # every LoRA row: its logged rank
    aurora-cp: "Aurora, CP core"    # one row

Rows of one table never share a label: where two would, each gets its row name appended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

# A row's logged options (names without "option.", values as logged text) -> its key options, in label order.
KeyOptions = Callable[[dict[str, str]], list[str]]


def _rank(name: str, letter: str = "r") -> KeyOptions:
    return lambda o: [f"{letter}={o[name]}"] if o.get(name) else []


def _aurora(o: dict[str, str]) -> list[str]:
    keys = [f"R={o['rank']}"] if o.get("rank") else []
    keys += ["CP"] if o.get("core") == "cp" else []
    return keys + [f"−{part}" for part in ("ICE", "GQT") if o.get(part.lower()) == "False"]


def _adalora(o: dict[str, str]) -> list[str]:
    return [f"r={o['init_r']}→{o['target_r']}"] if o.get("init_r") and o.get("target_r") else []


def _adapter(o: dict[str, str]) -> list[str]:
    return _rank("width", "w")(o) + ([o["placement"]] if o.get("placement", "sequential") != "sequential" else [])


def _prompts(o: dict[str, str]) -> list[str]:
    towers = [t for t in ("vision", "text") if o.get(t) == "False"]
    return (_rank("tokens", "P")(o) + ([o["depth"]] if o.get("depth") == "deep" else [])
            + [f"no {t}" for t in towers])


# registry method -> (display name, its key options)
DEFAULTS: dict[str, tuple[str, KeyOptions]] = {
    "frozen": ("Zero-shot", lambda o: []),
    "full_finetune": ("Full fine-tuning", lambda o: []),
    "heads_only": ("Heads only", lambda o: []),
    "bitfit": ("BitFit", lambda o: []),
    "ia3": ("IA3", lambda o: []),
    "lora": ("LoRA", _rank("r")),
    "loha": ("LoHa", _rank("r")),
    "lokr": ("LoKr", _rank("r")),
    "vera": ("VeRA", _rank("r")),
    "adalora": ("AdaLoRA", _adalora),
    "adapter": ("Adapter", _adapter),
    "uniadapter": ("UniAdapter", _rank("width", "w")),
    "prompt_tuning": ("Prompt tuning", _prompts),
    "aurora": ("Aurora", _aurora),
}


class LabelError(ValueError):
    """A labels mapping that cannot be applied."""


def load_labels(source: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """A labels mapping from a mapping or a YAML file of ``row-or-method: label template`` lines."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    import yaml

    path = Path(source)
    if not path.is_file():
        raise LabelError(f"{path}: no such labels file (expected YAML lines `<row or method>: <label>`)")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise LabelError(f"{path}: expected a mapping of `<row or method>: <label>`, got {type(doc).__name__}")
    return {str(k): str(v) for k, v in doc.items()}


def default_label(method: str, options: dict[str, str]) -> str:
    """``method``'s display name and key options ("LoRA (r=4)"); a method without defaults keeps its name."""
    name, keys = DEFAULTS.get(method, (method, lambda o: []))
    shown = keys(options)
    return f"{name} ({', '.join(shown)})" if shown else name


def row_label(row: str, method: str, options: dict[str, str], overrides: Mapping[str, str]) -> str:
    """One row's label: the override for its row name, else for its registry method, else the default."""
    template = overrides.get(row, overrides.get(method))
    if template is None:
        return default_label(method, options)
    try:
        return template.format(**options)
    except (KeyError, IndexError, ValueError) as err:
        raise LabelError(f"label {template!r} for {row!r}: cannot fill {err} from the logged options "
                         f"{sorted(options) or 'none'}") from err


def display_name(method: str, overrides: Mapping[str, str] | None = None) -> str:
    """A method's label where no options are known (published rows, the step benchmark): the override, the
    display name, or for ``<method>-<tag>`` ("full_finetune-14m") the display name and the tag."""
    overrides = overrides or {}
    if method in overrides:
        return overrides[method]
    base, _, tag = method.partition("-")
    if method not in DEFAULTS and base in DEFAULTS and tag:
        return f"{DEFAULTS[base][0]}, {tag}"
    return DEFAULTS[method][0] if method in DEFAULTS else method


def _options(part: pd.DataFrame) -> dict[str, str]:
    """The options one row's runs logged (the first run's: a row's runs differ only by seed)."""
    first = part.iloc[0]
    return {c.removeprefix("option."): str(first[c]) for c in part.columns
            if c.startswith("option.") and pd.notna(first[c])}


def labelled(trials: pd.DataFrame, overrides: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``trials`` with each row name in ``method`` replaced by its label (``row`` keeps the name), labels made
    unique within each (suite, tier)."""
    overrides = overrides or {}
    out = trials.assign(row=trials["method"])
    for _, scope in trials.groupby([trials["suite"].fillna(""), "tier"], sort=True):
        labels = {row: row_label(row, part["registry_method"].iloc[0], _options(part), overrides)
                  for row, part in scope.groupby("method", sort=True)}
        clashing = pd.Series(labels).duplicated(keep=False)
        labels = {row: f"{label} [{row}]" if clashing[row] else label for row, label in labels.items()}
        out.loc[scope.index, "method"] = scope["method"].map(labels)
    return out
