"""nox sessions: tests, lint, suite, report. Uses pip/virtualenv (uv ignores this machine's torch wheel)."""

from __future__ import annotations

import os
import shlex

import nox

os.environ.setdefault("NOX_DOWNLOAD_PYTHON", "never")
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

# torch, installed before anything that depends on it (else a dependency's bare `torch` picks the build). The
# default pins the version and lets pip pick the build: a CPU wheel where pip finds one locally (this project's
# machines and CI), elsewhere PyPI's default (a CUDA build on Linux x86_64). AURORA_TORCH, pip's arguments,
# chooses another: "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" for the CPU build anywhere.
TORCH = shlex.split(os.environ.get("AURORA_TORCH", "torch==2.13.0"))


def _install(session: nox.Session, *extras: str) -> None:
    # pip byte-compiles every module it installs (most of a two-minute install on a 2-core machine); Python
    # compiles only the modules a run imports, on first import, and keeps them, provided it may write bytecode
    session.env["PYTHONDONTWRITEBYTECODE"] = ""
    session.install("--no-compile", *TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("--no-compile", "-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    _install(session, "dev", "reports")
    session.run("pytest", "-q", *session.posargs)


@nox.session(name="verify-proxy")
def verify_proxy(session: nox.Session) -> None:
    """Rebuild the bundled proxy backbones (retrieval, VQA) by their recipes (minutes of pretraining) and compare them
    with the shipped ones."""
    _install(session, "dev")
    session.run("pytest", "-q", "-s", "-m", "rebuild", "tests/test_bundled.py", *session.posargs,
                env={"AURORA_VERIFY_PROXY": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "aurora", "baselines", "suites", "reports", "tests", "noxfile.py")


@nox.session
def suite(session: nox.Session) -> None:
    """nox -s suite -- retrieval   (a group, benchmark names, or a YAML spec; extra flags pass through)."""
    _install(session)
    session.run("aurora-bench", "suite", *(session.posargs or ["retrieval"]))


@nox.session
def ablation(session: nox.Session) -> None:
    """Aurora's ablations on the proxy tier (ICE, GQT, core, rank), then the ablation LaTeX tables and plots."""
    _install(session, "reports")
    session.run("aurora-bench", "suite", "ablation", *session.posargs)
    session.run("aurora-bench", "report")


@nox.session
def bench(session: nox.Session) -> None:
    """Step time and peak memory per method on the proxy and BLIP-base architectures (CPU, batch 2), then
    their plot beside the JSON (outputs/bench_efficiency.{pdf,png}). `-- orchestration`: Ray + MLflow overhead;
    `-- gpu [flags]`: training throughput, MFU, peak memory, evaluation time and loader share on a GPU
    (`-- gpu --tiny`: the CPU check of that script)."""
    _install(session, "reports")
    if session.posargs[:1] == ["gpu"]:  # needs a CUDA build of torch in the session's environment
        return session.run("python", "-m", "suites.perf.gpu", *session.posargs[1:])
    if session.posargs[:1] == ["orchestration"]:  # Ray + MLflow overhead, 2 vs 1 concurrent trials
        return session.run("python", "-m", "suites.perf.orchestration", *session.posargs[1:])
    session.run("python", "-m", "suites.perf.step", *session.posargs)
    session.run("python", "-m", "reports.plots", _flag(session.posargs, "--output", "outputs/bench.json"))


def _flag(args: list[str], name: str, default: str) -> str:
    """The value of ``name`` in ``args`` (``--name value`` or ``--name=value``), else ``default``."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


@nox.session
def report(session: nox.Session) -> None:
    """Tables (LaTeX), plots and outputs/reports/index.md from the MLflow runs alone; flags pass through
    (--output, --tracking-uri, --reported, --bench)."""
    _install(session, "reports")
    session.run("aurora-bench", "report", *session.posargs)
