"""Table captions, every fact read from the trials' records: the evaluation protocol (the logged task settings),
the tier and what its data are, the seeds, what the cells and marks mean, and the hardware. Plain text
(``reports.render`` escapes it for LaTeX)."""

from __future__ import annotations

import pandas as pd

# The evaluation settings a protocol sentence spells out; other task settings are listed as they were logged
# (``loss.*`` is how the model was trained, not how it was scored: the same for every row).
RETRIEVAL_SETTINGS = ("k_test", "rerank_itc_weight")
VQA_SETTINGS = ("k_test", "max_answer_tokens", "vqa_scorer")


def settings(trials: pd.DataFrame, name: str) -> list[str]:
    """The distinct logged values of task setting ``name`` ("" for runs that did not log it), sorted."""
    column = f"task.{name}"
    if name == "rerank_itc_weight" and "rerank_itc_weight" in trials:  # also read from older records
        column = "rerank_itc_weight"
    values = trials[column] if column in trials else pd.Series("", index=trials.index)
    return sorted({"" if pd.isna(v) else str(v) for v in values})


def _one(trials: pd.DataFrame, name: str, what: str) -> str:
    values = settings(trials, name)
    shown = [v or "not recorded" for v in values]
    return shown[0] if len(shown) == 1 else f"{' or '.join(shown)} (the runs differ in {what})"


def rerank_score(weight: str) -> str:
    """The re-ranking score of ``rerank_itc_weight`` (as logged): None weighs ITC by 1/τ, making it a logit."""
    if weight == "None":
        return "ITM logit + ITC cosine/τ (the ITC logit; not BLIP's score, ITM logit + 1·ITC cosine)"
    if not weight:
        return "a score not recorded"
    w = float(weight)
    return "ITM logit + 1·ITC cosine (BLIP's score)" if w == 1.0 else f"ITM logit + {w:g}·ITC cosine"


def itm_protocol(trials: pd.DataFrame) -> str:
    scores = [rerank_score(w) for w in settings(trials, "rerank_itc_weight")]
    score = scores[0] if len(scores) == 1 else " or ".join(scores) + " (the runs differ in the score)"
    return (f"Each query's top-{_one(trials, 'k_test', 'k_test')} candidates by ITC cosine similarity "
            f"re-ranked by {score}.{_others(trials, RETRIEVAL_SETTINGS)}")


def itc_protocol(trials: pd.DataFrame) -> str:
    return f"Ranked by ITC cosine similarity alone, no re-ranking.{_others(trials, RETRIEVAL_SETTINGS)}"


def vqa_protocol(trials: pd.DataFrame) -> str:
    return (f"Accuracy (%), VQA scorer {_one(trials, 'vqa_scorer', 'the scorer')} (exact match where the "
            f"benchmark has one answer per question). Answers: with a candidate list, the candidates whose first "
            f"tokens are the top-{_one(trials, 'k_test', 'k_test')} ranked by their full likelihood; without, "
            f"generated greedily, at most {_one(trials, 'max_answer_tokens', 'the length')} tokens."
            f"{_others(trials, VQA_SETTINGS)}")


def _others(trials: pd.DataFrame, spelled: tuple[str, ...]) -> str:
    """The logged task settings the protocol sentence does not spell out, as name=value."""
    names = sorted(c.removeprefix("task.") for c in trials.columns if c.startswith("task.")
                   and trials[c].notna().any())
    rest = [n for n in names if n not in spelled and not n.startswith("loss.")]
    pairs = [f"{n}={'/'.join(v for v in settings(trials, n) if v)}" for n in rest]
    return f" Other task settings: {', '.join(pairs)}." if pairs else ""


def tier_text(trials: pd.DataFrame, tier: str) -> str:
    """What the tier's numbers are: synthetic proxy data, or real data on the named backbones."""
    names = {str(b).removesuffix(" (cached)") for b in trials["backbone"].dropna()} - {""}  # cached: not a name
    backbones = ", ".join(sorted(names)) or "not recorded"
    if tier == "proxy":
        return (f"Proxy tier: synthetic images and captions (no real dataset), backbone {backbones}; "
                "not comparable with published numbers.")
    return f"{tier.capitalize()} tier, backbone {backbones}."


def seeds_text(trials: pd.DataFrame) -> str:
    """The seeds each row ran with: the common set, then any row that ran with others."""
    per_row = trials.groupby("method")["seed"].apply(lambda s: tuple(sorted(set(s))))
    common = per_row.value_counts().sort_index().idxmax()  # the most frequent set (ties: the smallest)
    text = f"Seeds {', '.join(map(str, common))}"
    others = [f"{row}: {', '.join(map(str, s))}" for row, s in per_row.items() if s != common]
    return text + (f" ({'; '.join(others)})" if others else "") + "."


def cells_text(mean_only: bool) -> str:
    if mean_only:
        return "Recalls: mean over seeds; R_mean: mean ± std over seeds (a row with one seed: its value)."
    return "Mean ± std over seeds (a row with one seed: its value)."


def hardware_text(trials: pd.DataFrame) -> str:
    """The hardware each run recorded, with the device and precision where it recorded them."""
    parts = set()
    for hardware, device, precision in trials[["hardware", "device", "precision"]].fillna("").itertuples(False):
        extra = ", ".join(x for x in (device if device != "cpu" else "", precision) if x)
        parts.add(f"{hardware or 'not recorded'}" + (f" ({extra})" if extra else ""))
    return f"Hardware: {'; '.join(sorted(parts))}."


def caption(title: str, protocol: str, trials: pd.DataFrame, tier: str, reported: bool, mean_only: bool) -> str:
    """The whole caption: title, protocol, tier, cells and marks, seeds, parameters, hardware."""
    apart = (" among reproduced rows; reported rows are published numbers under their papers' own protocol, "
             "not rerun" if reported else "")
    return (f"{title}. {protocol} {tier_text(trials, tier)} {cells_text(mean_only)} {seeds_text(trials)} Best "
            f"per column in bold, second underlined{apart}. Params: the method's trainable parameters (the task "
            f"heads, trained alike by every method that trains, not counted). {hardware_text(trials)}")
