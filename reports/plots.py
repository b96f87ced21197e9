"""Efficiency plots (seaborn; each written as PDF and PNG): trainable parameters against mean score per method
(the paper's bubble chart; bubble area: the method's trainable bytes), and training-step time and peak memory per
method from ``suites.perf.step``'s JSON.

``python -m reports.plots outputs/bench.json`` writes ``outputs/bench_efficiency.{pdf,png}`` (``nox -s bench``).
Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reports.labels import display_name
from reports.tables import rank_table

DPI = 200


def _figure(width: float, height: float, panels: int = 1):
    """A figure with ``panels`` axes side by side, seaborn's paper style."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sns.set_theme(context="paper", style="whitegrid")
    fig = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)  # a renderer, to measure labels before they are placed
    return fig, fig.subplots(1, panels)


def _save(fig, stem: Path) -> list[Path]:
    """PDF and PNG; fixed metadata, so that the same runs give the same files."""
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    fig.savefig(paths[0], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    fig.savefig(paths[1], dpi=DPI, metadata={"Software": None})
    return paths


FP32_BYTES = 4  # bytes per parameter assumed for records that did not log the method's bytes


def score_by_method(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: trainable parameters, the mean over benchmarks of the primary metric (each a mean over
    seeds), and the bytes of its trainable tensors (``bytes_logged``: False where estimated as fp32)."""
    ranks = rank_table(df)
    out = ranks.groupby("method").agg(params=("params_method_trainable", "first"), score=("score", "mean"),
                                      benchmarks=("benchmark", "nunique"))
    logged = df.groupby("method")["params_method_bytes"].mean() if "params_method_bytes" in df else None
    out["bytes_logged"] = logged.reindex(out.index).notna() if logged is not None else False
    out["bytes"] = logged.reindex(out.index) if logged is not None else float("nan")
    out["bytes"] = out["bytes"].fillna(out["params"] * FP32_BYTES)
    return out.reset_index().sort_values(["params", "method"], ascending=[False, True], ignore_index=True)


def size_text(n: float) -> str:
    """A byte count as "18 kB", "6 MB" (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


@dataclass(frozen=True)
class BubbleScale:
    """Bubble area (pt²) grows linearly with log10(bytes), from ``low`` to ``high`` decades: trainable bytes
    span several orders of magnitude, and an area proportional to bytes would hide the small methods."""

    low: int
    high: int
    smallest: float = 40.0
    largest: float = 900.0

    @classmethod
    def spanning(cls, sizes: pd.Series) -> BubbleScale:
        positive = sizes[sizes > 0]
        if positive.empty:
            return cls(0, 1)
        low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
        return cls(low, max(high, low + 1))

    def area(self, n: float) -> float:
        """Zero bytes (nothing trains) get the smallest area."""
        if n <= 0:
            return self.smallest
        frac = (math.log10(n) - self.low) / (self.high - self.low)
        return self.smallest + (self.largest - self.smallest) * min(max(frac, 0.0), 1.0)

    def legend_sizes(self) -> list[float]:
        """Reference sizes for the legend: every decade of the range, at most four of them."""
        step = max(1, math.ceil((self.high - self.low) / 3))
        return [10.0 ** d for d in range(self.low, self.high + 1, step)]


def params_vs_score(df: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """Bubble chart: trainable parameters (log x) against mean primary score; bubble area: the method's
    trainable bytes (log scale, with a size legend). Each bubble is labelled where the label overlaps no bubble,
    no other label and stays inside the axes. A method with no trainable parameters sits at x = 1, hollow."""
    primaries = ", ".join(sorted(df["primary_metric"].unique()))
    fig, _, _ = bubble_chart(score_by_method(df), title, f"mean score over benchmarks ({primaries})")
    return _save(fig, stem)


def bubble_chart(data: pd.DataFrame, title: str, ylabel: str):
    """``score_by_method``'s rows drawn and labelled -> (figure, axes, the labels' boxes in display pixels)."""
    import seaborn as sns

    data = data.assign(x=data["params"].clip(lower=1))
    scale = BubbleScale.spanning(data["bytes"])
    data["area"] = data["bytes"].map(scale.area)
    colours = sns.color_palette("deep", len(data))
    fig, ax = _figure(5.5, 3.6)
    for (_, r), colour in zip(data.iterrows(), colours):
        hollow = r["bytes"] <= 0
        ax.scatter(r["x"], r["score"], s=r["area"], color="none" if hollow else colour, edgecolors=colour,
                   linewidths=1.2 if hollow else 0.6, alpha=0.75 if not hollow else 1.0, zorder=3)
    ax.set_xscale("log")
    _pad_limits(ax, data)
    ax.set(xlabel="trainable parameters (log scale; none: hollow, at 1)", ylabel=ylabel, title=title)
    estimated = "" if data["bytes_logged"].all() else "\n(fp32 assumed where\nnot logged)"
    handles = [ax.scatter([], [], s=scale.area(n), color="0.6", alpha=0.6, label=size_text(n))
               for n in scale.legend_sizes()]
    spacing = scale.largest ** 0.5 / 7  # font sizes: the largest reference bubble's diameter, so none overlap
    ax.legend(handles=handles, title=f"trainable bytes{estimated}", loc="upper left", bbox_to_anchor=(1.02, 1.0),
              frameon=False, labelspacing=spacing, borderpad=1.0, title_fontsize=7, fontsize=7, handletextpad=1.5)
    fig.canvas.draw()  # fixes the layout, so that display coordinates are final before labels are placed
    return fig, ax, place_labels(ax, data)


def _pad_limits(ax, data: pd.DataFrame) -> None:
    """Room around the bubbles for their labels: more than a decade in x, a fifth of the range in y."""
    lo, hi = data["x"].min(), data["x"].max()
    ax.set_xlim(lo / 10 ** 0.6, hi * 10 ** 1.2)
    y_lo, y_hi = data["score"].min(), data["score"].max()
    pad = max(0.2 * (y_hi - y_lo), 2.0)
    ax.set_ylim(y_lo - pad, y_hi + pad)


# Where a label may sit around its bubble, tried in order: right, left, above, below, the diagonals, then the
# directions between (degrees); each at growing gaps from the bubble's edge (points), the further ones with a
# leader line to their bubble.
ANGLES = (0, 180, 90, 270, 45, 135, 315, 225, 22.5, 157.5, 337.5, 202.5, 67.5, 112.5, 292.5, 247.5)
GAPS_PT = (3, 10, 18, 28, 40, 55, 75, 100)
CLEARANCE_PT = 4.0  # the least gap between a label and any other bubble or label


def place_labels(ax, data: pd.DataFrame, fontsize: float = 7) -> list:
    """Label every bubble at the first spot (``ANGLES`` x ``GAPS_PT``) whose text overlaps no bubble and no
    placed label, stays inside the axes, and whose leader line crosses no other bubble or label -> the labels'
    boxes (display pixels), in ``data``'s order. Deterministic: the most crowded bubbles are labelled first
    (they have the fewest free spots); where no spot is free, the one with the fewest collisions is used."""
    renderer = ax.figure.canvas.get_renderer()
    to_px = ax.figure.dpi / 72.0
    centres = ax.transData.transform(data[["x", "score"]].to_numpy())  # (N, 2) display pixels
    radii = (data["area"].to_numpy() ** 0.5) / 2 * to_px  # (N,) pixels: a marker's area is its diameter²
    frame = ax.get_window_extent(renderer)
    crowd = [sum(math.dist(c, o) < 60 * to_px for o in centres) for c in centres]
    boxes: dict[int, object] = {}
    for i in sorted(range(len(data)), key=lambda k: (-crowd[k], k)):
        size = _text_size(ax, data["method"].iloc[i], fontsize, renderer)
        others = [(c, rad) for j, (c, rad) in enumerate(zip(centres, radii)) if j != i]
        best = None
        for gap, angle in ((gap, angle) for gap in GAPS_PT for angle in ANGLES):
            ha, va, anchor, box = _spot(centres[i], radii[i] + gap * to_px, math.radians(angle), size)
            leader = _leader(centres[i], radii[i], anchor) if gap > GAPS_PT[0] else []
            collisions = _collisions(box, leader, frame, list(boxes.values()), others, (centres[i], radii[i]),
                                     CLEARANCE_PT * to_px)
            if best is None or collisions < best[0]:
                best = (collisions, gap, ha, va, anchor, box)
            if collisions == 0:
                break
        _, gap, ha, va, anchor, box = best
        _annotate(ax, data, i, centres[i], anchor, ha, va, radii[i], to_px, fontsize, leader=gap > GAPS_PT[0])
        boxes[i] = box
    return [boxes[i] for i in range(len(data))]


def _leader(centre, radius: float, anchor) -> list:
    """Points along a leader line from the bubble's edge to the label (display pixels)."""
    return [p for p in (centre + (anchor - centre) * t for t in np.linspace(0, 1, 32))
            if math.dist(p, centre) > radius]


def _collisions(box, leader: list, frame, labels: list, others: list, own: tuple, clearance: float) -> int:
    """What a label at ``box`` with ``leader`` would collide with: the axes' edge (counted heavily), its own
    bubble, other bubbles and labels within ``clearance``, and bubbles or labels its leader crosses."""
    near = box.padded(clearance)  # a label touching another bubble would read as its label
    outside = not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))
    return (100 * outside + _circle_hits(box, *own) + sum(near.overlaps(b) for b in labels)
            + sum(_circle_hits(near, c, rad) for c, rad in others)
            + sum(any(b.contains(*pt) for pt in leader) for b in labels)
            + sum(any(math.dist(pt, c) < rad for pt in leader) for c, rad in others))


def _annotate(ax, data: pd.DataFrame, i: int, centre, anchor, ha: str, va: str, radius: float, to_px: float,
              fontsize: float, leader: bool) -> None:
    """Row ``i``'s label (its bubble at ``centre``) with its aligned edge at ``anchor`` (display pixels); a leader
    line to the bubble's edge."""
    offset = ((anchor[0] - centre[0]) / to_px, (anchor[1] - centre[1]) / to_px)  # points
    line = {"arrowstyle": "-", "color": "0.5", "linewidth": 0.5, "shrinkA": 0, "shrinkB": radius / to_px}
    text = ax.annotate(data["method"].iloc[i], (data["x"].iloc[i], data["score"].iloc[i]), xytext=offset,
                       textcoords="offset points", ha=ha, va=va, fontsize=fontsize, zorder=4,
                       arrowprops=line if leader else None, annotation_clip=False)
    text.set_in_layout(False)


def _text_size(ax, label: str, fontsize: float, renderer) -> tuple[float, float]:
    """The width and height of ``label`` as the axes would draw it (display pixels)."""
    probe = ax.text(0, 0, label, fontsize=fontsize)
    box = probe.get_window_extent(renderer)
    probe.remove()
    return box.width, box.height


def _spot(centre, reach: float, angle: float, size: tuple[float, float]):
    """A label of ``size`` in direction ``angle`` (radians), ``reach`` pixels from ``centre`` -> (horizontal and
    vertical alignment, the point the aligned edge sits on, the label's box), all in display pixels."""
    from matplotlib.transforms import Bbox

    dx, dy = math.cos(angle), math.sin(angle)
    ha = "left" if dx > 0.3 else "right" if dx < -0.3 else "center"
    va = "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"
    anchor = np.array([centre[0] + reach * dx, centre[1] + reach * dy])
    width, height = size
    x0 = {"left": anchor[0], "right": anchor[0] - width, "center": anchor[0] - width / 2}[ha]
    y0 = {"bottom": anchor[1], "top": anchor[1] - height, "center": anchor[1] - height / 2}[va]
    return ha, va, anchor, Bbox.from_bounds(x0, y0, width, height)


def _circle_hits(box, centre, radius) -> bool:
    """Whether a bounding box overlaps the circle of ``radius`` around ``centre`` (display pixels)."""
    nearest_x = min(max(centre[0], box.x0), box.x1)
    nearest_y = min(max(centre[1], box.y0), box.y1)
    return (nearest_x - centre[0]) ** 2 + (nearest_y - centre[1]) ** 2 < radius ** 2


def bench_frame(bench: dict, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per timed step (method, backbone, step_time_s, peak_rss_mb) from ``suites.perf.step``'s JSON;
    methods by their display names (``reports.labels``)."""
    rows = [{"method": display_name(r["method"], labels), "backbone": r["backbone"], "step_time_s": t,
             "peak_rss_mb": r["peak_rss_mb"]}
            for r in bench["rows"] for t in r.get("step_times_s") or [r["step_time_s"]]]
    return pd.DataFrame(rows)


def efficiency(bench: dict, stem: Path, labels: dict[str, str] | None = None) -> list[Path]:
    """Step time (median over the rounds, bars from min to max) and peak memory per method and backbone."""
    import seaborn as sns

    data = bench_frame(bench, labels)
    fig, (time_ax, mem_ax) = _figure(8, 3.6, panels=2)
    sns.barplot(data=data, x="method", y="step_time_s", hue="backbone", estimator="median", errorbar=("pi", 100),
                ax=time_ax, legend=False)
    sns.barplot(data=data.drop_duplicates(["method", "backbone"]), x="method", y="peak_rss_mb", hue="backbone",
                errorbar=None, ax=mem_ax)
    handles, names = mem_ax.get_legend_handles_labels()
    mem_ax.get_legend().remove()  # one legend for both panels, outside the bars
    fig.legend(handles, names, title="backbone", loc="outside right upper", frameon=False)
    batch = sorted({r.get("batch") for r in bench["rows"]} - {None})
    time_ax.set(ylabel="seconds per optimizer step", xlabel="", title="training step time (median; bars: min to max)")
    mem_ax.set(ylabel="peak RSS (MB)", xlabel="", title="peak memory")
    if data["method"].nunique() > 4:  # long names side by side would run into each other
        for ax in (time_ax, mem_ax):
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    fig.suptitle(f"batch {', '.join(map(str, batch))}; {bench.get('hardware', 'hardware not recorded')}", fontsize=8)
    return _save(fig, stem)


def efficiency_from_json(path: str | Path, stem: Path | None = None) -> list[Path]:
    """The efficiency plot of a ``suites.perf.step`` JSON file (default: ``<name>_efficiency`` beside it)."""
    path = Path(path)
    return efficiency(json.loads(path.read_text()), stem or path.with_name(f"{path.stem}_efficiency"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot a suites.perf.step JSON file (step time and peak memory).")
    parser.add_argument("bench_json", nargs="?", default="outputs/bench.json")
    for p in efficiency_from_json(parser.parse_args(argv).bench_json):
        print(p)


if __name__ == "__main__":
    main()
