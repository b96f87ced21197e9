"""Zero-shot transfer (``aurora-bench eval --run-id RUN --benchmark OTHER``): a finished trial's tuned weights
evaluated on another benchmark of its task, logged as an MLflow run linked to its source, and the report's
transfer table built from those runs. Trials run in-process on ``test-tiny`` and are logged through ``Tracker``
as a suite's driver logs them."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import mlflow
import pytest

from reports.build import write_report
from reports.render import latex, markdown
from reports.store import load_records
from reports.transfer import Transfer, load_transfers, transfer_frame, transfer_grid, transfer_grids
from suites.cli import main
from suites.orchestration.tracking import Tracker
from suites.orchestration.trial import TransferError, TrialSpec, run_trial, transfer_spec
from suites.record import TrialRecord

TINY = dict(train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 2})
# proxy-coco at test-tiny's sizes is test-tiny's data: a transfer there must reproduce the source's own metrics
TEST_TINY_DATA = {"train_images": 24, "val_images": 6, "test_images": 12, "captions_per_image": 2}
SMALL_FLICKR = {"train_images": 4, "val_images": 2, "test_images": 8, "captions_per_image": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A suite run with two test-tiny trials (LoRA, frozen) -> (output folder, uri, suite run id, {row: run id})."""
    out = tmp_path_factory.mktemp("transfer")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    tracker = Tracker(uri, artifact_dir=out / "mlartifacts")
    suite = tracker.start_suite("tiny", {"suite": "tiny"})
    runs = {}
    for method, options in (("lora", {"r": 2}), ("frozen", {})):
        spec = TrialSpec(method=method, benchmark="test-tiny", method_options=options, suite="tiny",
                         output_dir=str(out), **TINY)
        runs[method] = tracker.log_trial(suite, run_trial(spec))
    tracker.end_suite(suite)
    return out, uri, suite, runs


def _eval(out, *args) -> int:
    return main(["eval", "--output", str(out), *args])


def test_transfer_is_evaluated_logged_linked_and_tabled(store, capsys):
    out, uri, suite, runs = store
    client = mlflow.tracking.MlflowClient(uri)
    source = client.get_run(runs["lora"])

    # proxy-coco at test-tiny's sizes holds test-tiny's data: the same weights must give the logged metrics
    assert _eval(out, "--run-id", runs["lora"], "--benchmark", "proxy-coco", "--benchmark-options",
                 json.dumps(TEST_TINY_DATA), "--json") == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("itm_r_mean", "itc_r_mean"):
        assert again[key] == source.data.metrics[key], key

    for row in ("lora", "frozen"):
        assert _eval(out, "--run-id", runs[row], "--benchmark", "proxy-flickr", "--benchmark-options",
                     json.dumps(SMALL_FLICKR)) == 0
    printed = capsys.readouterr().out
    assert "zero-shot transfer" in printed and "itm_r_mean" in printed

    transfers = client.search_runs([source.info.experiment_id], "tags.kind = 'transfer'")
    assert len(transfers) == 3
    lora_flickr = next(r for r in transfers if r.data.tags["benchmark"] == "proxy-flickr"
                       and r.data.tags["method"] == "lora")
    tags = lora_flickr.data.tags
    assert tags["source_run_id"] == runs["lora"] and tags["source_benchmark"] == "test-tiny"
    assert tags["mlflow.parentRunId"] == suite and tags["suite"] == "tiny"
    assert tags["weights_sha256"] == source.data.tags["weights_sha256"]
    assert lora_flickr.info.run_name == "lora r=2 · seed0 · proxy-flickr (from test-tiny)"
    assert "itm_r_mean" in lora_flickr.data.metrics
    record = Tracker(uri).record_of(lora_flickr.info.run_id)  # record.json, like a trial's
    assert record.benchmark == "proxy-flickr" and record.task == "retrieval" and record.tier == "proxy"
    assert record.spec["method_options"] == {"r": 2} and record.spec["backbone"] == "test-tiny"
    assert record.task_config["k_test"] == 4  # test-tiny's re-ranking depth carried over

    # a transfer run re-evaluates with its source's weights, to the metrics it logged
    assert _eval(out, "--run-id", lora_flickr.info.run_id, "--json") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record.metrics

    # transfers are neither trials of the report's tables nor of a suite's resume
    assert {r.benchmark for r in load_records(uri)} == {"test-tiny"}
    found = load_transfers(uri)
    assert {(t.source, t.record.benchmark, t.record.row) for t in found} == {
        ("test-tiny", "proxy-coco", "lora"), ("test-tiny", "proxy-flickr", "lora"),
        ("test-tiny", "proxy-flickr", "frozen")}
    paths = write_report(out, uri, reported=[])
    path = next(p for p in paths if p.name == "tiny_proxy_transfer_retrieval.tex")
    tex = path.read_text()
    assert "test-tiny$\\to$proxy-coco" in tex and "test-tiny$\\to$proxy-flickr" in tex and "→" not in tex
    assert "Zero-shot transfer of weights tuned on test-tiny" in tex and "without further training" in tex
    grid = transfer_grid(transfer_frame(found), "tiny", "proxy", "retrieval")
    assert [b for b, _ in grid.groups] == ["test-tiny→proxy-coco", "test-tiny→proxy-flickr"]
    assert {r.stub[0] for r in grid.rows} == {"lora", "frozen"}
    frozen = next(r for r in grid.rows if r.stub[0] == "frozen")
    assert math.isnan(frozen.cells[0].mean)  # frozen was not transferred to proxy-coco
    assert frozen.cells[1].mean == pytest.approx(client.get_run(next(
        r.info.run_id for r in transfers if r.data.tags["method"] == "frozen")).data.metrics["itm_r_mean"])
    index = (out / "reports" / "index.md").read_text()
    assert "### Zero-shot transfer of weights tuned on test-tiny" in index


def test_transfer_refuses_another_task_in_one_line_and_logs_nothing(store, capsys):
    out, uri, _, runs = store
    before = len(mlflow.tracking.MlflowClient(uri).search_runs(_experiments(uri)))
    assert _eval(out, "--run-id", runs["lora"], "--benchmark", "proxy-vqa") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "proxy-tier vqa" in err[0]
    assert "transfer to: proxy-coco, proxy-didemo, proxy-flickr, proxy-msrvtt" in err[0]
    for bad, says in ((["--benchmark", "coco"], "real-tier retrieval"),  # proxy weights never score real data
                      (["--benchmark", "proxy-flickr", "--benchmark-options", '{"nope": 1}'], "nope"),
                      (["--benchmark", "proxy-flickr", "--benchmark-options", "[1]"], "JSON object"),
                      (["--benchmark-options", '{"k_test": 2}'], "--benchmark other than")):
        assert _eval(out, "--run-id", runs["lora"], *bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert len(mlflow.tracking.MlflowClient(uri).search_runs(_experiments(uri))) == before


def _experiments(uri: str) -> list[str]:
    return [e.experiment_id for e in mlflow.tracking.MlflowClient(uri).search_experiments()]


def test_transfer_checks_the_source_weights_hash(tmp_path, capsys):
    """A damaged source weights file (same size, other bytes) stops the transfer with one line, exit 2."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_dir=tmp_path / "mlartifacts")
    spec = TrialSpec(method="lora", benchmark="test-tiny", method_options={"r": 2}, output_dir=str(tmp_path), **TINY)
    run_id = tracker.log_trial(tracker.start_suite("damaged", {}), run_trial(spec))
    artifact = next((tmp_path / "mlartifacts").rglob("trained.safetensors"))
    data = bytearray(artifact.read_bytes())
    data[-64:] = bytes(64)
    artifact.write_bytes(bytes(data))
    capsys.readouterr()
    assert _eval(tmp_path, "--run-id", run_id, "--benchmark", "proxy-flickr", "--benchmark-options",
                 json.dumps(SMALL_FLICKR)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged" in err[0]


def test_transfer_spec_keeps_the_trial_and_carries_the_protocol():
    source = TrialSpec(method="aurora", benchmark="test-tiny", seed=3, method_options={"rank": 4}, label="aurora-r4",
                       suite="s", benchmark_options={"rerank_itc_weight": 1.0}, **TINY)
    spec = transfer_spec(source, "proxy-flickr", {"test_images": 8})
    assert (spec.method, spec.seed, spec.method_options, spec.train, spec.label, spec.suite) == (
        "aurora", 3, {"rank": 4}, TINY["train"], "aurora-r4", "s")
    assert spec.backbone == "test-tiny"  # test-tiny's default backbone, not proxy-flickr's
    assert spec.benchmark_options["k_test"] == 4 and spec.benchmark_options["rerank_itc_weight"] == 1.0
    assert spec.benchmark_options["test_images"] == 8
    assert transfer_spec(source, "proxy-flickr", {"k_test": 2}).benchmark_options["k_test"] == 2
    real = TrialSpec(method="lora", benchmark="coco", backbone="/models/blip", benchmark_options={"data_root": "/d"})
    assert transfer_spec(real, "flickr30k").benchmark_options["data_root"] == "/d"  # same layout root
    with pytest.raises(TransferError, match="transfer to: didemo, flickr30k, msrvtt$"):
        transfer_spec(real, "proxy-coco")
    with pytest.raises(TransferError, match="real-tier retrieval; weights tuned on 'vqav2' .* transfer to: msrvtt-qa$"):
        transfer_spec(TrialSpec(method="lora", benchmark="vqav2"), "coco")


def _transfer(source: str, target: str, row: str, seed: int, score: float) -> Transfer:
    record = TrialRecord(
        name=f"{target}--{row}--seed{seed}--from-{source}", row=row,
        spec={"method": row, "benchmark": target, "seed": seed, "suite": "s"}, method_config={},
        train_config={}, tier="real", task="retrieval", primary_metric="itm_r_mean", backbone="fixture",
        params={"method_trainable": 10 if row == "lora" else 0}, metrics={"itm_r_mean": score},
        hardware="fixture CPU")
    return Transfer(source, record)


def test_transfer_table_means_seeds_and_marks_the_best():
    transfers = [_transfer("coco", "flickr30k", "lora", 0, 80.0), _transfer("coco", "flickr30k", "lora", 1, 82.0),
                 _transfer("coco", "flickr30k", "frozen", 0, 70.0), _transfer("coco", "msrvtt", "frozen", 0, 30.0)]
    df = transfer_frame(transfers)
    assert set(df["benchmark"]) == {"coco→flickr30k", "coco→msrvtt"} and set(df["target"]) == {"flickr30k", "msrvtt"}
    grid = transfer_grid(df, "s", "real", "retrieval")
    assert [(c.metric, c.header, c.group) for c in grid.columns] == [
        ("itm_r_mean", "R_mean", "coco→flickr30k"), ("itm_r_mean", "R_mean", "coco→msrvtt")]
    lora = next(r for r in grid.rows if r.stub[0] == "lora")
    assert (lora.cells[0].mean, lora.cells[0].std, lora.cells[0].seeds) == (81.0, pytest.approx(2 ** 0.5), 2)
    assert lora.cells[0].mark == "best" and math.isnan(lora.cells[1].mean)
    assert grid.caption.startswith("Zero-shot transfer of weights tuned on coco")
    assert "coco→msrvtt R_mean" in markdown(grid)
    one_pair = transfer_grid(df[df["target"] == "flickr30k"], "s", "real", "retrieval")
    assert "coco→flickr30k R_mean" in markdown(one_pair)  # a single pair still names its column


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_transfer_table_compiles_with_pdflatex(tmp_path):
    transfers = [_transfer("coco", "flickr30k", "lora", 0, 80.0), _transfer("coco", "msrvtt", "frozen", 0, 30.0)]
    (name, grid), = transfer_grids(transfer_frame(transfers), "s", "real")
    assert name == "transfer_retrieval"
    (tmp_path / "table.tex").write_text(latex(grid))
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\begin{table}\n"
                   "\\input{table.tex}\n\\end{table}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
