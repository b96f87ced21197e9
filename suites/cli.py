"""``aurora-bench``: run suites, count parameters, list the registries, build reports.

The composition root: the one module that knows the harness (``suites``), the methods (through their
registry) and ``reports`` together.
"""

from __future__ import annotations

import argparse
import json
import sys

from aurora.api import TargetingError
from aurora.registry import UnknownNameError


def _cmd_list(args) -> int:
    from aurora.registry import METHODS
    from suites.backbones import BACKBONES
    from suites.benchmarks import BENCHMARKS
    from suites.orchestration import experiments

    what = args.what
    if what in ("methods", "all"):
        print("methods (trainable parameters on the BLIP-base retrieval architecture, heads apart):")
        for name, cls in METHODS.items():
            print(f"  {name:16s} {_blip_base_trainable(name):>22s}  {cls.description}")
    if what in ("benchmarks", "all"):
        print("benchmarks:")
        for name, factory in BENCHMARKS.items():
            bench = factory()
            print(f"  {name:16s} [{bench.tier}] {bench.description}")
    if what in ("backbones", "all"):
        print("backbones:")
        for name, factory in BACKBONES.items():
            print(f"  {name:16s} {(factory.__doc__ or '').strip().splitlines()[0]}")
    if what in ("groups", "all"):
        print("suite groups: " + ", ".join(experiments.groups()))
    return 0


def _blip_base_trainable(name: str) -> str:
    """A method's trainable parameters (heads apart) on BLIP-base retrieval, built on the meta device: the
    architecture without weights or init time."""
    import torch
    from transformers import BlipForImageTextRetrieval

    import aurora
    from aurora.api import mark_backbone, train_heads
    from suites.backbones.blip import blip_base_config
    from suites.benchmarks import RetrievalBenchmark

    try:
        with torch.device("meta"):
            model = mark_backbone(BlipForImageTextRetrieval(blip_base_config("retrieval")))
            method = aurora.create_method(name)
            method.apply(model)
        if method.trains:
            train_heads(model, RetrievalBenchmark.heads(model))
        report = aurora.param_report(model)
    except Exception as err:  # a method that cannot run on meta tensors is still listed
        return f"n/a ({type(err).__name__})"
    return f"{report.method_trainable:,} ({report.percent:.3g} %)"


def _cmd_params(args) -> int:
    import aurora
    from aurora.api import train_heads
    from suites.backbones import build_backbone
    from suites.benchmarks import RetrievalBenchmark, VQABenchmark

    # The benchmark heads each task trains for every method: BLIP's VQA has none apart from its answer decoder.
    tasks = {"retrieval": RetrievalBenchmark, "vqa": VQABenchmark}
    if args.task not in tasks:
        raise UnknownNameError(f"unknown task {args.task!r}; valid tasks: {', '.join(tasks)}")
    options = json.loads(args.options) if args.options else {}
    method = aurora.create_method(args.method, **options)
    backbone = build_backbone(args.backbone, task=args.task)
    method.apply(backbone.model)
    if method.trains:
        train_heads(backbone.model, tasks[args.task].heads(backbone.model))
    report = aurora.param_report(backbone.model).to_dict()
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:18s} {v:,.4f}" if isinstance(v, float) else f"{k:18s} {v:,}")
    return 0


def ranking_files(records) -> dict[str, str]:
    """The suite's ranking as the files stored on its MLflow run."""
    from reports.tables import ranking

    text, table = ranking(records)
    return {"ranking.txt": text + "\n", "ranking.csv": table.to_csv(index=False)}


def _cmd_suite(args) -> int:
    from reports.tables import print_ranking
    from suites.orchestration import experiments
    from suites.orchestration.preflight import preflight
    from suites.orchestration.runner import run_suite
    from suites.orchestration.tracking import check_reachable, tracking_uri

    exp = experiments.for_targets(args.targets or ["retrieval"], args.methods)
    if args.seeds:
        exp.seeds = args.seeds
    if args.steps is not None:  # over every entry's own, and over a recipe's epochs
        exp.overrides = {"steps": args.steps, "epochs": None}
    specs = experiments.revalidate(exp).trials()
    resources = {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": 0, "processes_per_trial": 1,
                 **exp.resources}
    resources.update({k: v for k in resources if (v := getattr(args, k)) is not None})  # flags win
    experiments.check_resources("command line", resources)
    summary = (f"suite {exp.name}: {len(specs)} trials ({len(exp.benchmarks)} benchmarks x {len(exp.methods)} "
               f"methods x up to {len(exp.seeds)} seeds)")
    if args.dry_run:
        return _print_dry_run(summary, specs, args)
    uri = tracking_uri(args.output, args.tracking_uri)
    check_reachable(uri)  # before the proxy pretraining, not after
    preflight(specs, resources, args.address, args.output)
    print(f"{summary} -> {args.output}", flush=True)
    result = run_suite(specs, exp.name, args.output, args.tracking_uri, args.address, **resources,
                       retries=args.retries, resume=args.resume, scheduler=exp.scheduler, summarize=ranking_files)
    records, failures = result
    print_ranking(records, failures)
    print(f"{len(records)} trial(s) finished, {len(result.stopped)} stopped early, {len(failures)} failed", flush=True)
    print("\n".join(_next_steps(uri, args)), flush=True)
    return 1 if failures else 0  # scripts and CI can tell a suite with any failed trial


def _print_dry_run(summary: str, specs, args) -> int:
    """``suite --dry-run``: the validated trials, one a line, with the MLflow run name each would get; no Ray,
    no store, no pretraining, nothing written."""
    import dataclasses

    from suites.orchestration.tracking import run_name, tracking_uri

    print(f"{summary} (dry run: nothing started)")
    for spec in specs:
        print(f"  {spec.name:40s} {run_name(dataclasses.asdict(spec), spec.row)}")
    print(f"would log to {tracking_uri(args.output, args.tracking_uri)}")
    return 0


def _next_steps(uri: str, args) -> list[str]:
    """The suite's closing lines: where its runs are, and the commands that show them."""
    from suites.orchestration.tracking import Tracker

    experiment_id = Tracker(uri, create=False).experiment_id
    command, url = mlflow_ui(uri, experiment_id)
    report = "aurora-bench report" + (f" --output {args.output}" if args.output != "outputs" else "")
    report += f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
    lines = [f"MLflow store: {uri}", f"tables and plots: {report}"]
    if command:
        lines.append(f"browse the runs: {command}   then open {url}")
    else:
        lines.append(f"browse the runs: {url}")
    return lines


def mlflow_ui(uri: str, experiment_id: str, port: int = 5000) -> tuple[str | None, str]:
    """-> (the command that serves MLflow's UI for store ``uri``, or None when ``uri`` is a tracking server
    that serves it already; the address of the experiment's runs). MLflow 3.17's UI opens an experiment on
    GenAI traces unless its ``workflowType`` is machine learning: the address sets it, and the runs tab."""
    import shlex

    view = f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return None, uri.rstrip("/") + view
    return (f"mlflow ui --backend-store-uri {shlex.quote(uri)} --port {port}",
            f"http://127.0.0.1:{port}{view}")


def _cmd_eval(args) -> int:
    """Re-evaluate a finished trial from its MLflow run (the record gives the spec, the artifact the weights), or
    with ``--benchmark`` evaluate its weights on another benchmark of its task, logged as a transfer run."""
    import dataclasses
    import tempfile

    from suites.orchestration.tracking import RunUnavailable, Tracker, check_finished_run, tracking_uri
    from suites.orchestration.trial import evaluate_saved

    tracker = Tracker(tracking_uri(args.output, args.tracking_uri), create=False)  # reads an existing store
    try:
        check_finished_run(tracker, args.run_id)
    except RunUnavailable as err:  # unknown, failed, stopped or unfinished: no weights to evaluate
        return _error(str(err))
    record = tracker.record_of(args.run_id)
    trained_run = tracker.source_of(args.run_id) or args.run_id  # a transfer run evaluated its source's weights
    source = record if trained_run == args.run_id else tracker.record_of(trained_run)
    transfer = args.benchmark is not None and args.benchmark != record.benchmark
    try:
        spec = _eval_spec(args, record, source, transfer)
    except ValueError as err:  # checked before anything is loaded or evaluated
        return _error(str(err))
    with tempfile.TemporaryDirectory() as tmp:
        weights = tracker.download(trained_run, "trained.safetensors", tmp)
        evaluated = evaluate_saved(spec, weights, source.weights_sha256, args.vqa_result_file)
    info = sys.stderr if args.json else sys.stdout  # --json: stdout holds the metrics alone
    if transfer:
        # the weights' own training facts (processes: its global batch) stay the source's
        evaluated = dataclasses.replace(evaluated, name=f"{spec.name}--from-{source.benchmark}",
                                        processes=source.processes)
        run_id = tracker.log_transfer(trained_run, evaluated)
        print(f"{source.name} (run {trained_run}) evaluated on {spec.benchmark} without training (zero-shot "
              f"transfer), logged as run {run_id}:", file=info)
    else:
        print(f"{record.name} (run {args.run_id}), re-evaluated without training:", file=info)
    if args.json:
        print(json.dumps(evaluated.metrics))
    else:
        for k, v in evaluated.metrics.items():
            logged = None if transfer else record.metrics.get(k)
            print(f"  {k:20s} {v:8.3f}" + (f"   (logged {logged:.3f})" if logged is not None else ""))
    if args.vqa_result_file:
        print(f"wrote the evaluation-server result file {args.vqa_result_file}", file=info)
    return 0


def _eval_spec(args, record, source, transfer: bool):
    """The spec ``eval`` evaluates: the run's own, or its source trial's on ``--benchmark``; ValueError (one
    line) for options or a result file that cannot work."""
    from pathlib import Path

    from suites.benchmarks import BENCHMARKS
    from suites.orchestration.trial import TrialSpec, transfer_spec, writes_results

    if args.benchmark_options and not transfer:
        raise ValueError("--benchmark-options sets the options of a --benchmark other than the run's")
    spec = (transfer_spec(TrialSpec(**source.spec), args.benchmark, _json_object(args.benchmark_options,
            "--benchmark-options")) if transfer else TrialSpec(**record.spec))
    result_file = args.vqa_result_file
    if result_file and not writes_results(spec.benchmark):
        valid = [name for name in BENCHMARKS.names() if writes_results(name)]
        raise ValueError(f"--vqa-result-file needs a benchmark with unanswered test questions ({', '.join(valid)}); "
                         f"run {args.run_id} evaluates {spec.benchmark!r}")
    if result_file and not Path(result_file).expanduser().resolve().parent.is_dir():
        raise ValueError(f"--vqa-result-file {result_file}: its folder {Path(result_file).parent} does not exist")
    return spec


def _json_object(text: str | None, flag: str) -> dict:
    """A flag's JSON object (``{}`` when not given); ValueError for anything else."""
    try:
        options = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err.msg}): {text}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"data_root\": \"/data\"}}', got {text}")
    return options


def _error(message: str) -> int:
    """Bad input: one line on stderr, exit code 2."""
    print(f"aurora-bench: error: {message}", file=sys.stderr)
    return 2


def _cmd_report(args) -> int:
    from reports.build import write_report
    from reports.labels import LabelError
    from reports.reported import ReportedError
    from suites.orchestration.tracking import TrackingUnavailable, require_store, tracking_uri

    reported = [] if args.no_reported else args.reported
    uri = tracking_uri(args.output, args.tracking_uri)
    try:
        require_store(uri)
        paths = write_report(args.output, uri, args.experiment, reported, args.bench, args.labels)
    # no store or no runs yet, a malformed file of published numbers, or labels that do not apply
    except (TrackingUnavailable, ReportedError, FileNotFoundError, LabelError) as err:
        print(f"aurora-bench: error: {err}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def _cmd_convert_blip(args) -> int:
    """An original Salesforce BLIP .pth -> a transformers folder the ``hf`` backbone loads."""
    from suites.backbones.convert import convert_blip

    conversion = convert_blip(args.source, args.out_dir, args.task, config=args.config, tokenizer=args.tokenizer,
                              image_size=args.image_size)
    print("\n".join(conversion.lines()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aurora-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("suite", help="run a suite group, benchmarks or a YAML spec through Ray Tune + MLflow")
    p.add_argument("targets", nargs="*", help="group (retrieval), benchmark names, or a YAML spec")
    p.add_argument("--methods", nargs="+",
                   help="run these methods: the suite's entries keep their settings, any other registered method "
                        "runs with its defaults and the suite's training settings (default: the suite's methods)")
    p.add_argument("--seeds", nargs="+", type=int, help="override the seeds")
    p.add_argument("--steps", type=int, help="override the training steps")
    p.add_argument("--output", default="outputs", help="output folder (MLflow sqlite, Ray results, weights)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite in --output)")
    p.add_argument("--address", help="Ray cluster address (auto or ray://host:port); default: local Ray")
    p.add_argument("--cpus-per-trial", type=float, help="default: the spec's resources, else 1")
    p.add_argument("--gpus-per-trial", type=float, help="fractions share a GPU; default: the spec's, else 0")
    p.add_argument("--max-concurrent", type=int, help="0: as many as the resources allow (default: the spec's)")
    p.add_argument("--processes-per-trial", type=int,
                   help="data-parallel processes per trial (Ray Train), each with --cpus-per-trial and "
                        "--gpus-per-trial, ITC features gathered across them; default: the spec's, else 1")
    p.add_argument("--retries", type=int, default=0, help="rerun a trial that raised up to this many times")
    p.add_argument("--resume", action="store_true",
                   help="continue the newest run of this suite: keep its finished trials, run the rest")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list the trials (with their MLflow run names); start nothing, write nothing")
    p.set_defaults(func=_cmd_suite)

    p = sub.add_parser("eval", help="re-evaluate a finished trial's saved weights (MLflow run id), no training; "
                                    "or evaluate them on another benchmark of the same task (zero-shot transfer)")
    p.add_argument("--run-id", required=True)
    p.add_argument("--output", default="outputs", help="output folder whose mlflow.db holds the run")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite in --output)")
    p.add_argument("--benchmark", metavar="NAME",
                   help="evaluate on this benchmark of the trial's task and tier instead (same method, options, "
                        "backbone); logged as a transfer run linked to the trial")
    p.add_argument("--benchmark-options", metavar="JSON",
                   help="options of the --benchmark, e.g. '{\"data_root\": \"/data\"}', over the trial's task "
                        "settings and data_root, which carry over")
    p.add_argument("--vqa-result-file", metavar="PATH",
                   help="also write the VQAv2 evaluation-server file: [{question_id, answer}] for every test2015 "
                        "question of vqa_test.json (EvalAI test-dev and test-std)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line (other lines to stderr)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("params", help="count a method's parameters on a backbone (no download)")
    p.add_argument("--method", required=True)
    p.add_argument("--backbone", default="blip-base")
    p.add_argument("--task", default="retrieval", help="retrieval or vqa")
    p.add_argument("--options", help="method options as JSON, e.g. '{\"rank\": 16}'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("list", help="list methods, benchmarks, backbones and suite groups")
    p.add_argument("what", nargs="?", default="all", choices=["all", "methods", "benchmarks", "backbones", "groups"])
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("report", help="LaTeX tables, plots and a summary page from the MLflow runs alone")
    p.add_argument("--output", default="outputs", help="folder with mlflow.db; the report goes to <output>/reports")
    p.add_argument("--tracking-uri")
    p.add_argument("--experiment", default="aurora-bench")
    p.add_argument("--reported", nargs="+", metavar="PATH",
                   help="YAML files or folders of published numbers (default: the packaged reports/reported/)")
    p.add_argument("--no-reported", action="store_true", help="show no published numbers")
    p.add_argument("--labels", metavar="YAML", help="method labels for the tables, e.g. 'lora: \"LoRA, rank {r}\"' "
                   "(default: <output>/labels.yaml where it exists)")
    p.add_argument("--bench", metavar="JSON", help="suites.perf.step output to plot (default: <output>/bench.json)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("convert-blip", help="convert an original Salesforce BLIP checkpoint (.pth) into a "
                                            "transformers folder the hf backbone loads")
    p.add_argument("source", metavar="SRC.pth", help="model_base.pth, model_base_retrieval_coco.pth, model_vqa.pth, ...")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (save_pretrained layout)")
    p.add_argument("--task", required=True, choices=["retrieval", "vqa"])
    p.add_argument("--config", metavar="BLIPCONFIG.json",
                   help="transformers BlipConfig JSON (default: BLIP-base at the checkpoint's image size)")
    p.add_argument("--image-size", type=int, metavar="PX",
                   help="resize the ViT position embeddings to this size (bicubic, as BLIP does)")
    p.add_argument("--tokenizer", metavar="DIR",
                   help="folder with bert-base-uncased's vocab.txt (or a saved tokenizer); required")
    p.set_defaults(func=_cmd_convert_blip)

    args = parser.parse_args(argv)
    from aurora.checkpoint import DamagedCheckpoint
    from suites.backbones import BackboneUnavailable
    from suites.backbones.convert import ConversionError
    from suites.benchmarks import DataError
    from suites.engine.device import DeviceError
    from suites.orchestration.experiments import SpecError
    from suites.orchestration.preflight import PreflightError
    from suites.orchestration.tracking import TrackingUnavailable

    try:
        return args.func(args)
    except (UnknownNameError, TargetingError, BackboneUnavailable, DataError, SpecError, TrackingUnavailable,
            PreflightError, DeviceError, ConversionError, DamagedCheckpoint) as err:
        # bad input: one clear line, no traceback
        print(f"aurora-bench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
