"""Real-tier text-video retrieval: MSR-VTT and DiDeMo in ClipBERT's jsonl, as Aurora reads them.

Layout under ``data_root`` (``video_root`` and ``ann_root`` override the two folders)::

    <data_root>/msrvtt/videos/video<N>.mp4
    <data_root>/msrvtt/txt_db/msrvtt_retrieval/{train,test}.jsonl   [val.jsonl]
    <data_root>/didemo/videos/<clip_name>.mp4                        (ALPRO's folder; other containers too)
    <data_root>/didemo/txt_db/didemo_retrieval/{train,test}.jsonl    [val.jsonl]

Each jsonl line is ``{"clip_name", "caption"}`` (MSR-VTT's train lines add ``sen_id``, which is not read).
Captions of one clip share its video id, so MSR-VTT's 20 captions per training video are soft ITC positives of
each other. DiDeMo is paragraph-to-video: repeated ``clip_name`` lines are joined into one paragraph (in file
order, as CLIP4Clip does), with a warning, so that sentence-level files cannot silently change the task.
ClipBERT's DiDeMo LMDB (``vis_db/didemo/data.mdb``) is not read: extract the videos into the folder layout.
``image_size`` sets the frame size whatever the checkpoint's (Aurora: 224 px; ``suites.benchmarks.resolution``).
Without ``val.jsonl`` the test split also serves as the (logged, never selected on) validation split.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from suites.benchmarks import BENCHMARKS, DataError, RetrievalBenchmark
from suites.benchmarks.files import data_roots
from suites.benchmarks.karpathy import pre_caption
from suites.benchmarks.resolution import ImageSizeOption
from suites.tasks.retrieval import VideoRetrievalData

# The containers DiDeMo's originals come in (LocalizingMoments lists them); .mp4 is tried first.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp", ".flv")


@dataclass
class VideoRetrieval(ImageSizeOption, RetrievalBenchmark):
    task_settings: ClassVar[tuple[str, ...]] = (*RetrievalBenchmark.task_settings, "image_size")
    dataset: str = "msrvtt"  # "msrvtt" or "didemo"
    data_root: str = ""
    video_root: str = ""  # default <data_root>/<dataset>/videos
    ann_root: str = ""  # default <data_root>/<dataset>/txt_db/<dataset>_retrieval
    n_frames: int = 8  # frames per clip, training and evaluation (Aurora: 8)
    max_words: int = 40  # BLIP's pre_caption limit for video captions
    join_repeats: bool = False  # DiDeMo: repeated clip_name lines form one paragraph
    missing_videos: str = "error"  # "error", or "drop" the annotations of missing videos (with a warning)

    def layout(self) -> str:
        d = self.dataset
        video = "video<N>.mp4" if d == "msrvtt" else "<clip_name>.mp4"
        return (f"<data_root>/{d}/txt_db/{d}_retrieval/{{train,test}}.jsonl (ClipBERT: one "
                f'{{"clip_name", "caption"}} object per line) and <data_root>/{d}/videos/{video}')

    def _roots(self) -> list[Path]:
        return data_roots(self.name, self.data_root, self.dataset, self.layout(), video_root=(self.video_root, "videos"),
                          ann_root=(self.ann_root, f"txt_db/{self.dataset}_retrieval"))

    def _check_video_root(self, video_root: Path) -> None:
        lmdb = next((p for p in (video_root, video_root.parent / "vis_db" / self.dataset)
                     if (p / "data.mdb").is_file()), None)
        if lmdb is not None and not any(video_root.glob("*.*")):
            raise DataError(f"{lmdb} is an LMDB video store (ClipBERT's vis_db), which is not supported; write each "
                            f"value (the raw video bytes) to {video_root}/<clip_name>.mp4; expected layout: "
                            f"{self.layout()}")
        if not video_root.is_dir():
            raise DataError(f"missing video folder {video_root}; expected layout: {self.layout()}")

    def _records(self, ann_root: Path, split: str, required: bool = True) -> list[dict] | None:
        path = ann_root / f"{split}.jsonl"
        if not path.is_file():
            if not required:
                return None
            raise DataError(f"missing annotation file {path}; expected layout: {self.layout()}")
        records = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {n} is not valid JSON ({err.msg}); expected one "
                                '{"clip_name", "caption"} object per line (ClipBERT jsonl)') from None
            if not isinstance(rec, dict) or not isinstance(rec.get("clip_name"), str) \
                    or not isinstance(rec.get("caption"), str):
                raise DataError(f"{path} line {n} needs a string 'clip_name' and a string 'caption' "
                                "(ClipBERT jsonl, one object per line)")
            records.append(rec)
        if not records:
            raise DataError(f"{path} holds no annotation lines; expected layout: {self.layout()}")
        return records

    def _grouped(self, records: list[dict], where: str) -> dict[str, list[str]]:
        """clip_name -> its captions in file order (first-seen clip order), DiDeMo's joined into one paragraph."""
        clips: dict[str, list[str]] = {}
        for rec in records:
            clips.setdefault(rec["clip_name"], []).append(rec["caption"])
        repeated = sum(len(c) > 1 for c in clips.values())
        if self.join_repeats and repeated:
            warnings.warn(f"{where}: {repeated} clip(s) have several lines; joined each clip's lines into one "
                          "paragraph (paragraph-to-video retrieval)", stacklevel=3)
            clips = {name: [" ".join(caps)] for name, caps in clips.items()}
        elif repeated and where.endswith("test.jsonl"):
            warnings.warn(f"{where}: {repeated} clip(s) have several captions; the 1k-A protocol uses one caption "
                          "per video, so these scores are not comparable with published ones", stacklevel=3)
        return clips

    def _video_index(self, video_root: Path) -> dict[str, Path]:
        """clip_name -> file; one folder listing, .mp4 preferred when a clip exists in several containers."""
        rank = {s: i for i, s in enumerate(VIDEO_SUFFIXES)}
        files = sorted((p for p in video_root.iterdir() if p.suffix.lower() in rank),
                       key=lambda p: -rank[p.suffix.lower()])
        return {p.stem: p for p in files}  # later (preferred) suffixes overwrite earlier ones

    def _split(self, records, where: str, videos: dict[str, Path], video_root: Path, mode: str) -> VideoRetrievalData:
        clips = self._grouped(records, where)
        missing = [name for name in clips if name not in videos]
        if missing and self.missing_videos != "drop":
            raise DataError(f"missing video {video_root / (missing[0] + '.mp4')} ({len(missing)} of {len(clips)} "
                            f"clips in {where} have no video; missing_videos='drop' skips them); expected layout: "
                            f"{self.layout()}")
        if missing:
            warnings.warn(f"{where}: dropped {len(missing)} of {len(clips)} clips whose video is missing",
                          stacklevel=2)
        paths, texts, txt2vid = [], [], []
        for name, captions in clips.items():
            if name in videos:
                texts += [pre_caption(c, self.max_words) for c in captions]
                txt2vid += [len(paths)] * len(captions)
                paths.append(str(videos[name]))
        return VideoRetrievalData(paths, texts, np.array(txt2vid), n_frames=self.n_frames, frame_mode=mode)

    def load(self):
        if self.missing_videos not in ("error", "drop"):
            raise ValueError(f"missing_videos must be 'error' or 'drop', got {self.missing_videos!r}")
        video_root, ann_root = self._roots()
        self._check_video_root(video_root)
        train, test = self._records(ann_root, "train"), self._records(ann_root, "test")
        val = self._records(ann_root, "val", required=False)
        videos = self._video_index(video_root)
        test_data = self._split(test, str(ann_root / "test.jsonl"), videos, video_root, "uniform")
        val_data = test_data if val is None else self._split(
            val, str(ann_root / "val.jsonl"), videos, video_root, "uniform")
        train_data = self._split(train, str(ann_root / "train.jsonl"), videos, video_root, "random")
        return train_data, val_data, test_data


@BENCHMARKS.register("msrvtt")
def msrvtt(**options) -> VideoRetrieval:
    """MSR-VTT text-video retrieval; ClipBERT's train.jsonl (7k) and the 1k-A test.jsonl."""
    return VideoRetrieval(name="msrvtt", tier="real", dataset="msrvtt", default_backbone="hf",
                          description="MSR-VTT 1k-A text-video retrieval (real data)", **options)


@BENCHMARKS.register("didemo")
def didemo(**options) -> VideoRetrieval:
    """DiDeMo paragraph-to-video retrieval from ALPRO's video folder."""
    return VideoRetrieval(name="didemo", tier="real", dataset="didemo", default_backbone="hf", join_repeats=True,
                          description="DiDeMo paragraph-to-video retrieval (real data)", **options)
