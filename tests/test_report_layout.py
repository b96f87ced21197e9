"""The report's presentation, apart from the MLflow store: method labels (defaults from the logged options,
overrides, clashes), the bubble chart's sizes (the methods' trainable bytes) and label placement, and the same
files from the same runs."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
from test_reports import ABLATION, BENCH, _record, _records

from reports.build import write_all
from reports.frame import frame
from reports.labels import LabelError, display_name, labelled, load_labels
from reports.plots import BubbleScale, bubble_chart, score_by_method, size_text
from reports.reported import load_reported


def _ablation_trials() -> pd.DataFrame:
    return frame([r for suite, r in _records() if suite == "ablation"])


def _labels(trials: pd.DataFrame) -> dict[str, str]:
    out = labelled(trials)
    return dict(zip(out["row"], out["method"]))


def test_default_labels_name_the_method_and_its_key_options():
    labels = _labels(frame([r for _, r in _records()]))
    assert labels["full_finetune"] == "Full fine-tuning" and labels["frozen"] == "Zero-shot"
    assert labels["lora"] == "LoRA (r=4)" and labels["aurora"] == "Aurora (R=8)"
    assert labels["aurora-r16"] == "Aurora (R=16)" and labels["aurora-cp"] == "Aurora (R=8, CP)"
    assert labels["aurora-no-ice-no-gqt"] == "Aurora (R=8, −ICE, −GQT)"
    assert len(set(labels.values())) == len(labels)  # every row its own label


def test_label_overrides_by_row_or_method_are_filled_with_the_logged_options(tmp_path):
    trials = frame([r for _, r in _records()])
    (tmp_path / "labels.yaml").write_text('lora: "LoRA, rank {r}"\naurora-cp: "Aurora with a CP core"\n')
    labels = dict(zip(*(labelled(trials, load_labels(tmp_path / "labels.yaml"))[c] for c in ("row", "method"))))
    assert labels["lora"] == "LoRA, rank 4" and labels["aurora-cp"] == "Aurora with a CP core"
    assert labels["aurora-r16"] == "Aurora (R=16)"  # rows not overridden keep the default
    with pytest.raises(LabelError, match=r"label 'LoRA \{rank\}' for 'lora': cannot fill 'rank' .*\['r'\]"):
        labelled(trials, {"lora": "LoRA {rank}"})
    with pytest.raises(LabelError, match="no such labels file"):
        load_labels(tmp_path / "missing.yaml")


def test_rows_that_would_share_a_label_get_their_row_name():
    out = labelled(_ablation_trials(), {"aurora-r4": "Aurora", "aurora-r16": "Aurora"})
    labels = dict(zip(out["row"], out["method"]))
    assert labels["aurora-r4"] == "Aurora [aurora-r4]" and labels["aurora-r16"] == "Aurora [aurora-r16]"
    assert labels["aurora"] == "Aurora (R=8)"


def test_published_rows_and_the_step_benchmark_use_display_names():
    assert display_name("uniadapter") == "UniAdapter" and display_name("full_finetune") == "Full fine-tuning"
    assert display_name("full_finetune-14m") == "Full fine-tuning, 14m"
    assert display_name("my_method") == "my_method" and display_name("lora", {"lora": "LoRA-Q"}) == "LoRA-Q"


def test_bubble_size_is_the_logged_trainable_bytes_not_process_memory():
    """A method's bytes as its params report logged them (fp16 here: 2 per parameter); the process' peak RSS
    plays no part. Records without the bytes fall back to fp32, and the chart says so."""
    rows = {"aurora": ABLATION["aurora"], "aurora-r16": ABLATION["aurora-r16"]}
    records = [_record("s", "proxy", "image", "proxy-coco", row, "aurora", o, n, q, 0) for row, (o, n, q) in rows.items()]
    records = [dataclasses.replace(r, params={**r.params, "method_bytes": 2 * r.params["method_trainable"]},
                                   peak_rss_mb=100.0 * i) for i, r in enumerate(records, 1)]
    data = score_by_method(frame(records)).set_index("method")
    assert data.loc["aurora", "bytes"] == 2 * 4_528 and data.loc["aurora-r16", "bytes"] == 2 * 10_592
    assert data["bytes_logged"].all()
    old = [dataclasses.replace(r, params={k: v for k, v in r.params.items() if k != "method_bytes"}) for r in records]
    data = score_by_method(frame(old)).set_index("method")
    assert data.loc["aurora", "bytes"] == 4 * 4_528 and not data["bytes_logged"].any()


def test_bubble_scale_grows_with_bytes_and_its_legend_spans_them():
    sizes = pd.Series([0.0, 18_112.0, 98_304.0, 6_026_752.0])
    scale = BubbleScale.spanning(sizes)
    areas = [scale.area(n) for n in sizes]
    assert areas == sorted(areas) and areas[0] == scale.smallest and areas[-1] < scale.largest
    legend = scale.legend_sizes()
    assert legend[0] <= 18_112 and legend[-1] >= 6_026_752 and 2 <= len(legend) <= 4
    assert [size_text(n) for n in legend] == ["10 kB", "100 kB", "1 MB", "10 MB"]


def test_bubble_labels_overlap_no_bubble_no_label_and_stay_in_the_axes():
    """A crowded chart (four methods within a point of each other): every label clear of every other bubble
    and label, and inside the axes."""
    names = ["Aurora (R=8)", "Aurora (R=8, −ICE)", "Aurora (R=8, −GQT)", "Aurora (R=8, −ICE, −GQT)", "LoRA (r=4)",
             "Full fine-tuning", "Zero-shot"]
    data = pd.DataFrame({"method": names, "params": [4528, 4528, 2992, 2992, 24576, 1.5e6, 0],
                         "score": [36.9, 35.4, 34.7, 34.0, 35.0, 58.0, 22.0]})
    data = data.assign(bytes=4 * data["params"], bytes_logged=True, benchmarks=1)
    Text = pytest.importorskip("matplotlib.text").Text  # the reports extra
    fig, ax, boxes = bubble_chart(data, "crowded", "score")
    renderer = fig.canvas.get_renderer()
    frame_box = ax.get_window_extent(renderer)
    for t in ax.texts:
        t.get_window_extent(renderer)  # places each annotation's text (and leader line)
    texts = {t.get_text(): Text.get_window_extent(t) for t in ax.texts}  # the text alone, without its leader
    assert sorted(texts) == sorted(names) and len(boxes) == len(names)
    for name, box in texts.items():
        assert frame_box.contains(box.x0, box.y0) and frame_box.contains(box.x1, box.y1), name
        assert not any(box.overlaps(other) for n, other in texts.items() if n != name), name
    for collection, name in zip(ax.collections, data["method"]):  # the bubbles, in data order
        centre = ax.transData.transform(collection.get_offsets()[0])
        radius = math.sqrt(collection.get_sizes()[0]) / 2 * fig.dpi / 72
        for other, box in texts.items():
            if other != name:
                nearest = (min(max(centre[0], box.x0), box.x1), min(max(centre[1], box.y0), box.y1))
                assert math.dist(nearest, centre) >= radius, (name, other)


def test_the_same_runs_give_the_same_files(tmp_path):
    trials = frame([r for suite, r in _records() if suite == "retrieval"])
    reported = load_reported([])
    bench = tmp_path / "bench.json"
    bench.write_text(__import__("json").dumps(BENCH))
    first = write_all(trials, tmp_path / "a", reported, bench, "origin")
    second = write_all(trials, tmp_path / "b", reported, bench, "origin")
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.name for p in first if p.read_bytes() != (tmp_path / "b" / p.name).read_bytes()] == []
