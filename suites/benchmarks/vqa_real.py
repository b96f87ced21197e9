"""Real-tier question answering: VQAv2 in BLIP's JSON format and MSRVTT-QA in its original release.

Layout under ``data_root`` (LAVIS-style; see ``image_root``/``ann_root``/``video_root`` for other layouts)::

    <data_root>/coco/annotations/vqa_{train,val,test}.json  answer_list.json  [vg_qa.json]
    <data_root>/coco/images/{train2014,val2014,test2015}/COCO_*.jpg
    <data_root>/vg/images/<id>.jpg                                  (Visual Genome, only with "vg" trained on)
    <data_root>/msrvtt/msrvtt_qa/{train,val,test}_qa.json
    <data_root>/msrvtt/videos/video<N>.mp4

VQAv2 trains on the splits ``train_splits`` names and scores on ``vqa_val`` with the official VQA accuracy
(test-dev needs the EvalAI server, for which ``write_results`` writes the file). By default that is
``vqa_train`` alone. Aurora's recipe trains on ``vqa_train`` + ``vqa_val`` (BLIP's adds Visual Genome's
``vg_qa``); then the questions of the first ``held_out_images`` images of ``vqa_val`` are kept out of
training and scored, so that no local score reads an image the model trained on. MSRVTT-QA trains on
``train_qa`` and scores exact matches of generated answers on ``test_qa``, as Aurora does. Every file is
checked before any training starts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from suites.benchmarks import BENCHMARKS, DataError, VQABenchmark
from suites.benchmarks.files import data_roots, media_path, read_json, require_fields
from suites.benchmarks.resolution import ImageSizeOption
from suites.tasks.retrieval import read_image
from suites.tasks.vqa import VQAData, answer_weights, predict

_QUESTION_PUNCT = re.compile(r"[.!\"()*#:;~]")
MSRVTT_QA_WEIGHT = 0.05  # Aurora's fixed weight of the one video-QA answer
VG_WEIGHT = 0.2  # BLIP's fixed weight of a Visual Genome answer (a single string)
# BLIP's VQA model in transformers (Aurora starts both QA tasks from BLIP's VQA-finetuned weights)
VQA_CHECKPOINT = "Salesforce/blip-vqa-base"
# What VQAv2 can train on: BLIP's vqa_train.json, vqa_val.json and Visual Genome's vg_qa.json
TRAIN_SPLITS = ("train", "val", "vg")


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalisation: lowercase, delete . ! " ( ) * # : ; ~ (no space left), right-strip,
    keep max_words. '?' and ',' stay."""
    words = _QUESTION_PUNCT.sub("", question.lower()).rstrip(" ").split(" ")
    return " ".join(words[:max_words])


def _decoded_image(path: str, train: bool, rng):
    """A question's image, decoded at once (PIL): a truncated or damaged file fails naming the file."""
    return read_image(path)


@dataclass
class _Questions:
    """One split's questions, gathered from one or more annotation files; each image file is listed once."""

    visuals: list[str] = field(default_factory=list)  # image files
    index: dict[tuple[Path, str], int] = field(default_factory=dict)  # (image root, record path) -> visual
    questions: list[str] = field(default_factory=list)
    visual_idx: list[int] = field(default_factory=list)
    targets: list[tuple[list[str], list[float]]] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    ids: list = field(default_factory=list)

    def visual(self, root: Path, rel: str, layout: str) -> int:
        if (root, rel) not in self.index:
            self.index[root, rel] = len(self.visuals)
            self.visuals.append(media_path(root, rel, layout))
        return self.index[root, rel]

    def add(self, visual: int, question: str, question_id, answered: tuple[tuple[list, list], list]) -> None:
        self.visual_idx.append(visual)
        self.questions.append(question)
        self.ids.append(question_id)
        self.targets.append(answered[0])
        self.answers.append(answered[1])


def _answers(rec: dict, answered: bool, where: str, layout: str) -> tuple[tuple[list, list], list]:
    """-> ((distinct answers, weights), the annotators' answers) of one record; nothing for a test question."""
    if not answered:
        return ([], []), []
    if isinstance(rec["answer"], str):  # a Visual Genome record: one answer, fixed weight
        return ([rec["answer"]], [VG_WEIGHT]), [rec["answer"]]
    if not rec["answer"] or not all(isinstance(a, str) for a in rec["answer"]):
        raise DataError(f"{where}: 'answer' must be a non-empty list of strings; expected layout: {layout}")
    return answer_weights(rec["answer"]), list(rec["answer"])


@dataclass
class VQAv2(ImageSizeOption, VQABenchmark):
    # the training splits and the held-out images decide what the local score reads: logged with every result
    task_settings: ClassVar[tuple[str, ...]] = (*VQABenchmark.task_settings, "image_size", "train_splits",
                                                "held_out_images")
    data_root: str = ""
    image_root: str = ""  # default <data_root>/coco/images: holds train2014/, val2014/, test2015/
    ann_root: str = ""  # default <data_root>/coco/annotations
    val_questions: int = 1000  # per-epoch validation reads the first of the scored vqa_val questions
    augment: bool = True  # BLIP's training transform on training images (random resized crop, flip, RandAugment)
    # the training questions, from TRAIN_SPLITS (Aurora: train and val; BLIP: train, val and vg)
    train_splits: tuple[str, ...] = ("train",)
    # with "val" trained on: vqa_val's first this many images (file order) are held out and scored
    held_out_images: int = 1000
    vg_root: str = ""  # Visual Genome images, default <data_root>/vg/images (BLIP's vg_root/image/ works too)

    LAYOUT = ("<data_root>/coco/annotations/{vqa_train,vqa_val,vqa_test,answer_list}.json and "
              "<data_root>/coco/images/{train2014,val2014,test2015}/COCO_*.jpg (BLIP's VQA JSONs)")
    VG_LAYOUT = ("<ann_root>/vg_qa.json (BLIP's Visual Genome QA: one {question, answer (a string), image, "
                 "dataset: 'vg'} record per question) and <data_root>/vg/images/<id>.jpg (or vg_root=DIR)")

    def __post_init__(self):
        super().__post_init__()
        splits = self.train_splits
        if isinstance(splits, str) or not isinstance(splits, (list, tuple)) or not splits \
                or not set(splits) <= set(TRAIN_SPLITS) or len(set(splits)) != len(splits):
            raise ValueError(f"train_splits must be a list of distinct names from {list(TRAIN_SPLITS)}, such as "
                             f"[train, val], got {splits!r}")
        self.train_splits = tuple(splits)
        if isinstance(self.held_out_images, bool) or not isinstance(self.held_out_images, int) \
                or self.held_out_images < 1:
            raise ValueError(f"held_out_images must be a whole number >= 1, got {self.held_out_images!r}")

    def _roots(self) -> list[Path]:
        return data_roots(self.name, self.data_root, "coco", self.LAYOUT, image_root=(self.image_root, "images"),
                          ann_root=(self.ann_root, "annotations"))

    def _split(self, parts: list[tuple[list, Path, Path]], answer_list: list[str], answered: bool) -> VQAData:
        """Questions of one or more annotation files -> one split; ``parts``: (records, image root, file)."""
        split = _Questions()
        for records, image_root, path in parts:
            vg = path.name == "vg_qa.json"  # Visual Genome records: one answer string, no question id needed
            layout = self.VG_LAYOUT if vg else self.LAYOUT
            fields = {"question": str, "image": str} if vg else {"question_id": int, "question": str, "image": str}
            if answered:
                fields["answer"] = str if vg else (list, str)
            for i, rec in enumerate(records):
                where = f"{path} record {i}"
                require_fields(rec, fields, where, layout)
                split.add(split.visual(image_root, rec["image"], layout), pre_question(rec["question"]),
                          rec.get("question_id", f"vg-{i}") if vg else rec["question_id"],
                          _answers(rec, answered, where, layout))
        return VQAData(split.visuals, split.questions, np.array(split.visual_idx), split.targets, split.answers,
                       split.ids, answer_list=answer_list, load_visual=_decoded_image)

    def _held_out(self, records: list) -> tuple[list, list]:
        """vqa_val's records -> (scored, trained on): with "val" trained on, the questions of its first
        ``held_out_images`` images are scored and the rest trained on, so no scored image is seen in training;
        else all of it is scored."""
        if "val" not in self.train_splits:
            return records, []
        held: set = set()
        for rec in records:
            image = rec.get("image") if isinstance(rec, dict) else None
            if len(held) < self.held_out_images and isinstance(image, str):
                held.add(image)
        scored = [r for r in records if isinstance(r, dict) and r.get("image") in held]
        trained = [r for r in records if not (isinstance(r, dict) and r.get("image") in held)]
        if not trained:
            raise DataError(f"held_out_images={self.held_out_images} holds out every image of vqa_val, leaving "
                            "none of it to train on; lower it, or drop 'val' from train_splits")
        return scored, trained

    def _visual_genome(self, ann_root: Path) -> tuple[list, Path, Path]:
        """(records, image root, file) of Visual Genome QA; missing files fail naming both expected paths."""
        path = ann_root / "vg_qa.json"
        root = Path(self.vg_root).expanduser() if self.vg_root else Path(self.data_root or ".").expanduser() / "vg" / "images"
        if not path.is_file() or not root.is_dir():
            missing = " and ".join(str(p) for p, ok in ((path, path.is_file()), (root, root.is_dir())) if not ok)
            raise DataError(f"train_splits asks for Visual Genome ('vg') but {missing} is missing; expected layout: "
                            f"{self.VG_LAYOUT}")
        return read_json(path, self.VG_LAYOUT), root, path

    def load(self) -> tuple[VQAData, VQAData, VQAData]:
        image_root, ann_root = self._roots()
        answer_list = read_json(ann_root / "answer_list.json", self.LAYOUT)
        if not all(isinstance(a, str) for a in answer_list):
            raise DataError(f"{ann_root / 'answer_list.json'} must be a JSON list of answer strings")
        files = {s: ann_root / f"vqa_{s}.json" for s in ("train", "val", "test")}
        records = {s: read_json(p, self.LAYOUT) for s, p in files.items()}
        parts = {"vg": self._visual_genome(ann_root)} if "vg" in self.train_splits else {}
        scored, val_trained = self._held_out(records["val"])
        parts.update(train=(records["train"], image_root, files["train"]), val=(val_trained, image_root, files["val"]))
        train = self._split([parts[s] for s in self.train_splits], answer_list, answered=True)
        train.augment = self.augment
        test = self._split([(scored, image_root, files["val"])], answer_list, answered=True)
        val = self._split([(scored[: self.val_questions], image_root, files["val"])], answer_list, answered=True)
        # test2015 has no answers: checked now, predicted only by write_results
        self.submission = self._split([(records["test"], image_root, files["test"])], answer_list, answered=False)
        return train, val, test

    def write_results(self, model, backbone, path: str | os.PathLike, k_test: int = 128) -> Path:
        """The EvalAI result file for vqa_test: a JSON array of {question_id, answer}, one per question id."""
        if not hasattr(self, "submission"):
            self.load()
        data = self.submission
        answers = predict(model, self.sized(backbone), data, k_test=k_test)
        unique = {qid: a for qid, a in zip(data.question_ids, answers)}  # de-duplicated by question id
        path = Path(path)
        path.write_text(json.dumps([{"question_id": q, "answer": a} for q, a in unique.items()]))
        return path


@dataclass
class MSRVTTQA(ImageSizeOption, VQABenchmark):
    task_settings: ClassVar[tuple[str, ...]] = (*VQABenchmark.task_settings, "image_size")
    data_root: str = ""
    ann_root: str = ""  # default <data_root>/msrvtt/msrvtt_qa
    video_root: str = ""  # default <data_root>/msrvtt/videos
    n_frames: int = 8  # frames per clip: uniform at evaluation, one random frame per segment in training

    LAYOUT = ("<data_root>/msrvtt/msrvtt_qa/{train,val,test}_qa.json (original MSRVTT-QA: id, video_id, "
              "question, answer) and <data_root>/msrvtt/videos/video<N>.mp4")

    def _roots(self) -> list[Path]:
        return data_roots(self.name, self.data_root, "msrvtt", self.LAYOUT, ann_root=(self.ann_root, "msrvtt_qa"),
                          video_root=(self.video_root, "videos"))

    def _frames(self, path: str, train: bool, rng) -> np.ndarray:
        from suites.tasks.video import sample_frames

        return sample_frames(path, self.n_frames, "random" if train else "uniform", rng)

    def _split(self, split: str, ann_root: Path, video_root: Path) -> VQAData:
        path = ann_root / f"{split}_qa.json"
        videos: dict[int, int] = {}
        questions, visual_idx, targets, answers, ids = [], [], [], [], []
        for i, rec in enumerate(read_json(path, self.LAYOUT)):
            require_fields(rec, {"video_id": (int, str), "question": str, "answer": str}, f"{path} record {i}", self.LAYOUT)
            video = rec["video_id"]
            if isinstance(video, str):  # ClipBERT's "video<N>" where the original release has N
                if not re.fullmatch(r"(video)?\d+", video):
                    raise DataError(f"{path} record {i}: video_id {video!r} is neither N nor 'video<N>'")
                video = int(video.removeprefix("video"))
            videos.setdefault(video, len(videos))
            visual_idx.append(videos[video])
            questions.append(rec["question"])  # Aurora passes questions through as released (lowercase)
            targets.append(([rec["answer"]], [MSRVTT_QA_WEIGHT]))
            answers.append([rec["answer"]])  # scored by exact match, spelling as released
            ids.append(rec.get("id", f"{split}-{i}"))  # ids synthesised from the line where a file has none
        paths = []
        for video in videos:
            file = video_root / f"video{video}.mp4"
            if not file.is_file():
                raise DataError(f"missing video {file} (asked for by {path}); expected layout: {self.LAYOUT}")
            paths.append(str(file))
        return VQAData(paths, questions, np.array(visual_idx), targets, answers, ids, scoring="exact",
                       load_visual=self._frames)

    def load(self) -> tuple[VQAData, VQAData, VQAData]:
        ann_root, video_root = self._roots()
        return tuple(self._split(s, ann_root, video_root) for s in ("train", "val", "test"))


@BENCHMARKS.register("vqav2")
def vqav2(**options) -> VQAv2:
    return VQAv2(name="vqav2", tier="real", default_backbone=VQA_CHECKPOINT,
                 description="VQAv2, BLIP's JSONs; trained on train_splits (default vqa_train), VQA accuracy on "
                 "vqa_val (its held-out images where vqa_val is trained on) (real data)",
                 **options)


@BENCHMARKS.register("msrvtt-qa")
def msrvtt_qa(**options) -> MSRVTTQA:
    return MSRVTTQA(name="msrvtt-qa", tier="real", default_backbone=VQA_CHECKPOINT,
                    description="MSRVTT-QA (original release), exact-match accuracy of generated answers on "
                    "test_qa (real data)", **options)
