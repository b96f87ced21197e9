"""Every suite command of the README's ```bash blocks works as written: each runs as a dry run (validated, its
trials listed, nothing started or written), since the suites themselves take minutes to hours."""

import re
import shlex
from pathlib import Path

import pytest

from suites.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# `aurora-bench suite ARGS` anywhere on a line (commented alternatives too), and `nox -s suite -- ARGS`,
# which runs `aurora-bench suite ARGS`; a command ends at a comment or the line's end
COMMAND = re.compile(r"(?:aurora-bench suite|nox -s suite --)((?: [^#\n]*)?)")


def _blocks(language: str) -> list[tuple[int, str]]:
    """(offset, text) of every fenced block of ``language`` in the README."""
    return [(m.start(), m.group(1)) for m in re.finditer(rf"^```{language}\n(.*?)^```", README, re.M | re.S)]


def _commands() -> list[tuple[int, list[str]]]:
    found = []
    for offset, block in _blocks("bash"):
        for match in COMMAND.finditer(block):
            found.append((offset, shlex.split(match.group(1))))
    return found


COMMANDS = _commands()


def test_the_readme_has_the_suite_commands_this_test_runs():
    args = [" ".join(a) for _, a in COMMANDS]
    assert "proxy-coco --methods aurora lora --seeds 0 1 2" in args and "retrieval" in args
    assert len(COMMANDS) >= 6


def _spec_file(target: str, offset: int, tmp_path: Path) -> str:
    """A YAML target the README shows rather than ships (``my_coco.yaml``): the first ```yaml block after the
    command's, written to ``tmp_path``; a shipped one, by its path from the repository."""
    if (ROOT / target).is_file():
        return str(ROOT / target)
    text = next(block for start, block in _blocks("yaml") if start > offset)
    (tmp_path / target).write_text(text)
    return str(tmp_path / target)


@pytest.mark.parametrize("offset, args", COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_a_readme_suite_command_validates_and_lists_its_trials(offset, args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a relative --output lands here, if anything were written
    args = [_spec_file(a, offset, tmp_path) if a.endswith((".yaml", ".yml")) else a for a in args]
    written_before = set(tmp_path.iterdir())
    assert main(["suite", *args, "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    summary = re.search(r"^suite \S+: (\d+) trials", out, re.M)
    assert summary and int(summary.group(1)) == len(re.findall(r"^  \S+--seed\d+ ", out, re.M)) > 0
    assert set(tmp_path.iterdir()) == written_before  # no store, no output folder


def test_benchmark_names_run_methods_their_group_lacks(capsys):
    # proxy-coco runs under the retrieval group; bitfit is not in it and comes with the registry's defaults
    assert main(["suite", "proxy-coco", "--methods", "aurora", "bitfit", "--seeds", "0", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("suite retrieval-proxy-coco: 4 trials")
    assert "aurora rank=8 · seed1 · proxy-coco" in out and "bitfit · seed0 · proxy-coco" in out


def test_a_method_neither_listed_nor_registered_is_one_line_naming_both(capsys):
    assert main(["suite", "proxy-coco", "--methods", "aurora-no-ice", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "entries of suite 'retrieval-proxy-coco'" in err and "registered methods (adalora" in err
    assert err.count("\n") == 1


def _noxfile_torch(env: dict) -> list[str]:
    """The noxfile's torch install arguments under ``env`` (read in a fresh process: nox registers sessions
    globally, once per process)."""
    import json
    import subprocess
    import sys

    code = "import json, runpy, sys; print(json.dumps(runpy.run_path(sys.argv[1])['TORCH']))"
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "noxfile.py")], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def test_the_noxfile_installs_the_torch_the_readme_documents():
    import os

    pytest.importorskip("nox")
    env = {k: v for k, v in os.environ.items() if k != "AURORA_TORCH"}
    assert _noxfile_torch(env) == ["torch==2.13.0"]  # what CI installs
    cpu = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert _noxfile_torch({**env, "AURORA_TORCH": cpu}) == cpu.split()
    assert f'AURORA_TORCH="{cpu}"' in README


@pytest.mark.parametrize("targets, group, name", [
    (["proxy-coco"], "retrieval", "retrieval-proxy-coco"),  # named after the task, though ablation lists it too
    (["proxy-flickr", "proxy-coco"], "retrieval", "retrieval"),  # all the group's benchmarks: the group's name
    (["proxy-vqa"], "vqa", "vqa"),
    (["proxy-msrvtt"], "video", "video-proxy-msrvtt"),  # no group named retrieval lists it: the smallest that does
    (["coco"], "official-coco", "official-coco"),
])
def test_benchmark_names_run_under_their_main_group(targets, group, name):
    from suites.orchestration import experiments

    assert experiments.main_group(targets) == group
    exp = experiments.for_targets(targets)
    assert exp.name == name and exp.benchmarks == targets
