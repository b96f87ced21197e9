"""Checkpoint folders that cannot serve the task asked for fail with one line naming the folder and the fix.

A folder without processor files used to be reported as an offline hub download; a retrieval checkpoint loaded
for VQA used to run with a random answer decoder, without a word.
"""

from __future__ import annotations

import pytest
from transformers import BertTokenizer, BlipImageProcessor, BlipProcessor

from suites.backbones import BackboneUnavailable, build_backbone
from suites.backbones.blip import blip_config, from_config
from suites.cli import main
from suites.orchestration.preflight import preflight
from suites.orchestration.trial import TrialSpec

TINY = dict(hidden=32, layers=2, heads=2, mlp=64, image_size=32, patch=16, vocab_size=64, proj=16)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(57)]


def save_checkpoint(folder, task: str, processor: bool = True):
    """A tiny random BLIP of ``task`` written by save_pretrained, with (or without) its processor files."""
    from_config(blip_config(**TINY), seed=0, task=task).save_pretrained(str(folder))
    if processor:
        vocab = folder.parent / f"{folder.name}-vocab.txt"
        vocab.write_text("\n".join(WORDS) + "\n")
        image = BlipImageProcessor(size={"height": 32, "width": 32})
        BlipProcessor(image, BertTokenizer(str(vocab))).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {"retrieval": save_checkpoint(root / "retrieval", "retrieval"),
            "vqa": save_checkpoint(root / "vqa", "vqa"),
            "bare": save_checkpoint(root / "bare", "retrieval", processor=False)}


def error_line(capsys, argv) -> str:
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line]
    assert code == 2 and len(err) == 1 and err[0].startswith("aurora-bench: error: "), err
    return err[0]


def test_a_folder_without_processor_files_says_which_and_how_to_add_them(checkpoints, capsys):
    folder = checkpoints["bare"]
    line = error_line(capsys, ["params", "--method", "lora", "--backbone", str(folder)])
    assert f"checkpoint folder {folder} has the model but no image processor" in line
    assert "tokenizer (tokenizer.json or vocab.txt)" in line
    assert "save_pretrained" in line and "convert-blip" in line
    assert "hub" not in line and "hf download" not in line  # not an offline download


def test_a_folder_without_weights_says_so(tmp_path, capsys):
    folder = tmp_path / "config-only"
    folder.mkdir()
    blip_config(**TINY).to_json_file(str(folder / "config.json"))
    line = error_line(capsys, ["params", "--method", "lora", "--backbone", str(folder)])
    assert f"checkpoint folder {folder} has a config.json but no weights" in line


@pytest.mark.parametrize(("saved", "task", "missing", "extra"), [
    ("retrieval", "vqa", "text_decoder (63)", "itm_head (2), text_proj (2), vision_proj (2)"),
    ("vqa", "retrieval", "itm_head (2), text_proj (2), vision_proj (2)", "text_decoder (61)"),
])
def test_a_checkpoint_of_another_task_fails_with_one_line(checkpoints, capsys, saved, task, missing, extra):
    line = error_line(capsys, ["params", "--method", "lora", "--backbone", str(checkpoints[saved]), "--task", task])
    assert f"{checkpoints[saved]} has no weights for {missing} of the {task} model" in line
    assert f"it holds {extra} instead" in line and "allow_missing_weights: true" in line


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_a_checkpoint_of_its_own_task_loads_every_weight(checkpoints, task):
    backbone = build_backbone(str(checkpoints[task]), task=task)
    assert backbone.info["load_report"].endswith("every weight loaded, none left over")
    assert "random init" not in backbone.source


def test_allow_missing_weights_warns_and_marks_the_results(checkpoints):
    with pytest.warns(RuntimeWarning, match=r"allow_missing_weights: .* random init \(not in the checkpoint\): "
                                            r"text_decoder \(63\)"):
        backbone = build_backbone(str(checkpoints["retrieval"]), task="vqa", allow_missing_weights=True)
    assert backbone.source.endswith("[random init: text_decoder (63)]")  # recorded with every result
    assert "unused checkpoint weights: itm_head (2), text_proj (2), vision_proj (2)" in backbone.info["load_report"]


def vqa_spec(checkpoint, **backbone_options) -> TrialSpec:
    return TrialSpec(method="frozen", benchmark="proxy-vqa", backbone=str(checkpoint),
                     backbone_options=backbone_options)


def test_preflight_stops_a_suite_on_a_checkpoint_of_another_task(checkpoints):
    with pytest.raises(BackboneUnavailable, match="has no weights for text_decoder"):
        preflight([vqa_spec(checkpoints["retrieval"])])


def test_preflight_prints_the_load_report_and_honours_the_spec_option(checkpoints, capsys):
    """The spec's backbone_options reach the preflight load (as they reach the trials)."""
    with pytest.warns(RuntimeWarning, match="allow_missing_weights"):
        preflight([vqa_spec(checkpoints["retrieval"], allow_missing_weights=True)])
    out = capsys.readouterr().out
    assert f"checkpoint {checkpoints['retrieval']} as BlipForQuestionAnswering: random init (not in the " \
           "checkpoint): text_decoder (63)" in out
