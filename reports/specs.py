"""Which trials make which table, and with which columns: image-text retrieval, video-text retrieval and
VQA (a table per benchmark, so that each fits a single column; VQA's one column per benchmark side by side;
reported rows where published), and Aurora's two ablations (ICE/GQT and rank/core). Trials are chosen by their logged task (and, for retrieval, the modality ``reports.frame`` derives)
and their method options, so a table appears exactly when a suite's runs contain what it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from reports.captions import itc_protocol, itm_protocol, vqa_protocol
from reports.grid import Column

RECALL_KS = (1, 5, 10)
DIRECTIONS = (("txt", "Image-to-text"), ("img", "Text-to-image"))  # the logged direction, its header


def image_columns(protocol: str) -> list[Column]:
    """R@1/5/10 per direction (TR: image-to-text, IR: text-to-image), then R_mean: their mean. The recalls
    print their mean alone in LaTeX, so that one benchmark fits a single-column text width."""
    return ([Column(f"{protocol}_{d}_r{k}", f"R@{k}", group=g, mean_only=True) for d, g in DIRECTIONS
             for k in RECALL_KS] + [Column(f"{protocol}_r_mean", "R_mean", tex_header="R$_\\mathrm{mean}$")])


def video_columns(protocol: str) -> list[Column]:
    """Text-to-video R@k and median rank, as the video papers report (the logged ``img`` direction)."""
    return ([Column(f"{protocol}_img_r{k}", f"R@{k}", group="Text-to-video") for k in RECALL_KS]
            + [Column(f"{protocol}_img_r_mdr", "MdR", higher_is_better=False, group="Text-to-video")])


VQA_COLUMNS = [Column("accuracy", "Acc.")]


def _retrieval(df: pd.DataFrame, modality: str) -> pd.DataFrame:
    return df[(df["task"] == "retrieval") & (df["modality"] == modality)]


def video_trials(df: pd.DataFrame) -> pd.DataFrame:
    return _retrieval(df, "video")


def image_trials(df: pd.DataFrame) -> pd.DataFrame:
    return _retrieval(df, "image")


def vqa_trials(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["task"] == "vqa"]


def headline_protocol(trials: pd.DataFrame) -> str:
    """The ablations show ITM re-ranked retrieval, or VQA accuracy."""
    return vqa_protocol(trials) if not vqa_trials(trials).empty else itm_protocol(trials)


def headline_columns(part: pd.DataFrame) -> list[Column]:
    """The few columns an ablation shows for one benchmark's trials."""
    if not video_trials(part).empty:
        return [Column("itm_img_r1", "R@1"), Column("itm_img_r_mdr", "MdR", higher_is_better=False)]
    if not image_trials(part).empty:
        return [Column("itm_txt_r1", "TR@1"), Column("itm_img_r1", "IR@1"),
                Column("itm_r_mean", "R_mean", tex_header="R$_\\mathrm{mean}$")]
    return VQA_COLUMNS


# ---------------------------------------------------------------- Aurora's ablations, from the logged options

def _option(df: pd.DataFrame, name: str) -> pd.Series:
    return df.get(f"option.{name}", pd.Series("", index=df.index)).fillna("").astype(str)


def _aurora(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["registry_method"] == "aurora"]


def _same_options_as(df: pd.DataFrame, ref: pd.Series, ignore: set[str]) -> pd.DataFrame:
    """The trials of ``df`` whose method options equal ``ref``'s, apart from ``ignore``."""
    cols = [c for c in df.columns if c.startswith("option.") and c.removeprefix("option.") not in ignore]
    same = (df[cols].fillna("").astype(str) == ref[cols].fillna("").astype(str)).all(axis=1)
    return df[same]


def ice_gqt_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Aurora with ICE and/or GQT switched off, beside the variants that differ from them only there."""
    aurora = _aurora(df)
    ablated = aurora[(_option(aurora, "ice") == "False") | (_option(aurora, "gqt") == "False")]
    if ablated.empty:
        return ablated
    return _same_options_as(aurora, ablated.iloc[0], {"ice", "gqt"})


def rank_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Full Aurora (ICE and GQT on) at several ranks or cores, otherwise the same options."""
    aurora = _aurora(df)
    full = aurora[(_option(aurora, "ice") != "False") & (_option(aurora, "gqt") != "False")]
    if full.empty:
        return full
    same = _same_options_as(full, full.iloc[0], {"rank", "core"})
    variants = same[["option.rank", "option.core"]].drop_duplicates() if "option.rank" in same else same.iloc[0:0]
    return same if len(variants) > 1 else same.iloc[0:0]


# ---------------------------------------------------------------- stubs (leading cells) and row order

def count(n: float) -> str:
    """A parameter count as papers print it: 4.5k, 1.51M."""
    n = float(n)
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{int(n)}"


def _params(part: pd.DataFrame) -> str:
    return count(part["params_method_trainable"].iloc[0]) if "params_method_trainable" in part else "--"


def method_stub(method: str, part: pd.DataFrame) -> list[str]:
    return [method, _params(part)]


def ice_gqt_stub(method: str, part: pd.DataFrame) -> list[str]:
    flag = {"True": "on", "False": "off"}
    return [method, flag.get(_option(part, "ice").iloc[0], "?"), flag.get(_option(part, "gqt").iloc[0], "?"),
            _params(part)]


def rank_stub(method: str, part: pd.DataFrame) -> list[str]:
    return [method, _option(part, "core").iloc[0], _option(part, "rank").iloc[0], _params(part)]


def by_params(method: str, part: pd.DataFrame) -> tuple:
    """Most trainable parameters first (full fine-tuning on top, frozen last), then by name."""
    return (-float(part["params_method_trainable"].iloc[0]) if "params_method_trainable" in part else 0.0, method)


def by_ice_gqt(method: str, part: pd.DataFrame) -> tuple:
    return (_option(part, "ice").iloc[0] != "True", _option(part, "gqt").iloc[0] != "True", method)


def by_core_rank(method: str, part: pd.DataFrame) -> tuple:
    rank = _option(part, "rank").iloc[0]
    return (_option(part, "core").iloc[0], int(rank) if rank.isdigit() else 0, method)


def reported_params(numbers: pd.DataFrame) -> str:
    """A reported row's parameter cell: the published count, else the published percentage."""
    by = dict(zip(numbers["metric"], numbers["value"]))
    if "params_method_trainable" in by:
        return count(by["params_method_trainable"])
    return f"{by['params_percent']:g}%" if "params_percent" in by else "--"


@dataclass(frozen=True)
class TableSpec:
    name: str  # the file name's suffix
    title: str
    select: Callable[[pd.DataFrame], pd.DataFrame]
    columns: Callable[[pd.DataFrame], list[Column]]  # one benchmark's trials -> its columns
    protocol: Callable[[pd.DataFrame], str]  # the trials -> how they were scored, for the caption
    stub_headers: tuple[str, ...] = ("Method", "Params")
    stub: Callable[[str, pd.DataFrame], list[str]] = method_stub
    order: Callable[[str, pd.DataFrame], tuple] = by_params
    reported: bool = True  # show published numbers for the same benchmark and metric
    # benchmarks per table: several benchmarks' columns side by side would not fit a single-column text width
    benchmarks_per_table: int = 1


IMAGE = "Image-text retrieval"
VIDEO = "Text-to-video retrieval (MdR: median rank, lower is better)"
TABLES = [
    TableSpec("itm", f"{IMAGE}, ITM re-ranked", image_trials, lambda _: image_columns("itm"), itm_protocol),
    TableSpec("itc", f"{IMAGE}, ITC only", image_trials, lambda _: image_columns("itc"), itc_protocol),
    TableSpec("video_itm", f"{VIDEO}, ITM re-ranked", video_trials, lambda _: video_columns("itm"), itm_protocol),
    TableSpec("video_itc", f"{VIDEO}, ITC only", video_trials, lambda _: video_columns("itc"), itc_protocol),
    TableSpec("vqa", "Visual and video question answering", vqa_trials, lambda _: VQA_COLUMNS, vqa_protocol,
              benchmarks_per_table=4),
    TableSpec("ice_gqt", "Aurora ablation: Informative Context Enhancement (ICE) and Gated Query Transformation "
              "(GQT)", ice_gqt_trials, headline_columns, headline_protocol,
              ("Method", "ICE", "GQT", "Params"), ice_gqt_stub, by_ice_gqt, reported=False),
    TableSpec("rank", "Aurora ablation: rank R and core of the mode approximation", rank_trials,
              headline_columns, headline_protocol, ("Method", "Core", "Rank", "Params"), rank_stub, by_core_rank,
              reported=False),
]
