"""Real-tier question answering: VQAv2 in BLIP's JSON format and MSRVTT-QA in its original release.

Layout under ``data_root`` (LAVIS-style; see ``image_root``/``ann_root``/``video_root`` for other layouts)::

    <data_root>/coco/annotations/vqa_{train,val,test}.json  answer_list.json
    <data_root>/coco/images/{train2014,val2014,test2015}/COCO_*.jpg
    <data_root>/msrvtt/msrvtt_qa/{train,val,test}_qa.json
    <data_root>/msrvtt/videos/video<N>.mp4

VQAv2 trains on ``vqa_train`` only and scores on ``vqa_val`` with the official VQA accuracy: BLIP and Aurora
also train on ``vqa_val``, which would contaminate a local score (test-dev needs the EvalAI server, for
which ``write_results`` writes the file). MSRVTT-QA trains on ``train_qa`` and scores exact matches of
generated answers on ``test_qa``, as Aurora does. Every file is checked before any training starts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suites.benchmarks import BENCHMARKS, DataError, VQABenchmark
from suites.benchmarks.files import data_roots, media_path, read_json, require_fields
from suites.tasks.vqa import VQAData, answer_weights, predict

_QUESTION_PUNCT = re.compile(r"[.!\"()*#:;~]")
MSRVTT_QA_WEIGHT = 0.05  # Aurora's fixed weight of the one video-QA answer
VG_WEIGHT = 0.2
# BLIP's VQA model in transformers (Aurora starts both QA tasks from BLIP's VQA-finetuned weights)
VQA_CHECKPOINT = "Salesforce/blip-vqa-base"  # BLIP's fixed weight of a Visual Genome answer (a single string)


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalisation: lowercase, delete . ! " ( ) * # : ; ~ (no space left), right-strip,
    keep max_words. '?' and ',' stay."""
    words = _QUESTION_PUNCT.sub("", question.lower()).rstrip(" ").split(" ")
    return " ".join(words[:max_words])


@dataclass
class VQAv2(VQABenchmark):
    data_root: str = ""
    image_root: str = ""  # default <data_root>/coco/images: holds train2014/, val2014/, test2015/
    ann_root: str = ""  # default <data_root>/coco/annotations
    val_questions: int = 1000  # per-epoch validation reads the first of vqa_val's questions
    augment: bool = True  # BLIP's training transform on training images (random resized crop, flip, RandAugment)

    LAYOUT = ("<data_root>/coco/annotations/{vqa_train,vqa_val,vqa_test,answer_list}.json and "
              "<data_root>/coco/images/{train2014,val2014,test2015}/COCO_*.jpg (BLIP's VQA JSONs)")

    def _roots(self) -> list[Path]:
        return data_roots(self.name, self.data_root, "coco", self.LAYOUT, image_root=(self.image_root, "images"),
                          ann_root=(self.ann_root, "annotations"))

    def _split(self, records: list, image_root: Path, answer_list: list[str], path: Path, answered: bool) -> VQAData:
        images: dict[str, int] = {}
        questions, visual_idx, targets, answers, ids = [], [], [], [], []
        fields = {"question_id": int, "question": str, "image": str}
        if answered:
            fields["answer"] = (list, str)
        for i, rec in enumerate(records):
            require_fields(rec, fields, f"{path} record {i}", self.LAYOUT)
            if rec["image"] not in images:
                images[rec["image"]] = len(images)
            visual_idx.append(images[rec["image"]])
            questions.append(pre_question(rec["question"]))
            ids.append(rec["question_id"])
            if not answered:
                targets.append(([], []))
                answers.append([])
            elif isinstance(rec["answer"], str):  # a Visual Genome record: one answer, fixed weight
                targets.append(([rec["answer"]], [VG_WEIGHT]))
                answers.append([rec["answer"]])
            elif not rec["answer"] or not all(isinstance(a, str) for a in rec["answer"]):
                raise DataError(f"{path} record {i}: 'answer' must be a non-empty list of strings; "
                                f"expected layout: {self.LAYOUT}")
            else:
                targets.append(answer_weights(rec["answer"]))
                answers.append(list(rec["answer"]))
        visuals = [media_path(image_root, rel, self.LAYOUT) for rel in images]
        return VQAData(visuals, questions, np.array(visual_idx), targets, answers, ids, answer_list=answer_list)

    def load(self) -> tuple[VQAData, VQAData, VQAData]:
        image_root, ann_root = self._roots()
        answer_list = read_json(ann_root / "answer_list.json", self.LAYOUT)
        if not all(isinstance(a, str) for a in answer_list):
            raise DataError(f"{ann_root / 'answer_list.json'} must be a JSON list of answer strings")
        files = {s: ann_root / f"vqa_{s}.json" for s in ("train", "val", "test")}
        records = {s: read_json(p, self.LAYOUT) for s, p in files.items()}
        train = self._split(records["train"], image_root, answer_list, files["train"], answered=True)
        train.augment = self.augment
        test = self._split(records["val"], image_root, answer_list, files["val"], answered=True)
        val = self._split(records["val"][: self.val_questions], image_root, answer_list, files["val"], answered=True)
        # test2015 has no answers: checked now, predicted only by write_results
        self.submission = self._split(records["test"], image_root, answer_list, files["test"], answered=False)
        return train, val, test

    def write_results(self, model, backbone, path: str | os.PathLike, k_test: int = 128) -> Path:
        """The EvalAI result file for vqa_test: a JSON array of {question_id, answer}, one per question id."""
        if not hasattr(self, "submission"):
            self.load()
        data = self.submission
        answers = predict(model, backbone, data, k_test=k_test)
        unique = {qid: a for qid, a in zip(data.question_ids, answers)}  # de-duplicated by question id
        path = Path(path)
        path.write_text(json.dumps([{"question_id": q, "answer": a} for q, a in unique.items()]))
        return path


@dataclass
class MSRVTTQA(VQABenchmark):
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
                 description="VQAv2, BLIP's JSONs; trained on vqa_train, VQA accuracy on vqa_val (real data)",
                 **options)


@BENCHMARKS.register("msrvtt-qa")
def msrvtt_qa(**options) -> MSRVTTQA:
    return MSRVTTQA(name="msrvtt-qa", tier="real", default_backbone=VQA_CHECKPOINT,
                    description="MSRVTT-QA (original release), exact-match accuracy of generated answers on "
                    "test_qa (real data)", **options)
