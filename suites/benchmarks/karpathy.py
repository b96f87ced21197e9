"""Real-tier image-text retrieval: MSCOCO and Flickr30K in the Karpathy-split JSON that BLIP ships.

Layout under ``data_root`` (LAVIS-style; BLIP's and Aurora's folders work too, see ``image_root``)::

    <data_root>/coco/images/{train2014,val2014}/COCO_*.jpg
    <data_root>/coco/annotations/coco_karpathy_{train,val,test}.json
    <data_root>/flickr30k/images/flickr30k-images/<id>.jpg
    <data_root>/flickr30k/annotations/flickr30k_{train,val,test}.json   (or LAVIS's train/val/test.json)

Train files hold one record per caption ({image, caption, image_id}); val/test one record per image
({image, caption: [...]}). Every file is checked before any training starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from suites.benchmarks import BENCHMARKS, DataError, RetrievalBenchmark
from suites.benchmarks.files import data_roots, media_path, read_json
from suites.benchmarks.resolution import ImageSizeOption
from suites.tasks.retrieval import RetrievalData

_PUNCT = re.compile(r"[.!\"()*#:;~]")


def pre_caption(caption: str, max_words: int = 30) -> str:
    """BLIP's caption normalisation: lowercase, punctuation to spaces, collapse whitespace, cut to max_words."""
    words = _PUNCT.sub(" ", caption.lower()).split()
    return " ".join(words[:max_words])


@dataclass
class KarpathyRetrieval(ImageSizeOption, RetrievalBenchmark):
    task_settings: ClassVar[tuple[str, ...]] = (*RetrievalBenchmark.task_settings, "image_size")
    dataset: str = "coco"  # "coco" or "flickr30k"
    data_root: str = ""
    image_root: str = ""  # default <data_root>/<dataset>/images
    ann_root: str = ""  # default <data_root>/<dataset>/annotations
    max_words: int = 30
    augment: bool = True  # BLIP's training transform on training images (random resized crop, flip, RandAugment)

    def _roots(self) -> list[Path]:
        return data_roots(self.name, self.data_root, self.dataset, self.layout(),
                          image_root=(self.image_root, "images"), ann_root=(self.ann_root, "annotations"))

    def layout(self) -> str:
        if self.dataset == "coco":
            return ("<data_root>/coco/annotations/coco_karpathy_{train,val,test}.json and "
                    "<data_root>/coco/images/{train2014,val2014}/COCO_*.jpg")
        return ("<data_root>/flickr30k/annotations/flickr30k_{train,val,test}.json and "
                "<data_root>/flickr30k/images/flickr30k-images/<id>.jpg")

    def _annotation(self, ann_root: Path, split: str) -> list:
        names = [f"coco_karpathy_{split}.json"] if self.dataset == "coco" else [f"flickr30k_{split}.json", f"{split}.json"]
        found = next((ann_root / n for n in names if (ann_root / n).is_file()), ann_root / names[0])
        return read_json(found, self.layout())

    def _image_path(self, image_root: Path, rel: str) -> str:
        return media_path(image_root, rel, self.layout())

    def _train(self, records: list, image_root: Path, path_hint: str) -> RetrievalData:
        images, index, texts, txt2img = [], {}, [], []
        for i, rec in enumerate(records):
            if not {"image", "caption"} <= set(rec) or not isinstance(rec["caption"], str):
                raise DataError(f"{path_hint} record {i} needs 'image' and a string 'caption' (one record per caption)")
            key = rec.get("image_id", rec["image"])  # only a grouping key for "same image"
            if key not in index:
                index[key] = len(images)
                images.append(self._image_path(image_root, rec["image"]))
            texts.append(pre_caption(rec["caption"], self.max_words))
            txt2img.append(index[key])
        return RetrievalData(images, texts, np.array(txt2img), augment=self.augment)

    def _eval(self, records: list, image_root: Path, path_hint: str) -> RetrievalData:
        images, texts, txt2img = [], [], []
        for i, rec in enumerate(records):
            if not isinstance(rec.get("caption"), list) or "image" not in rec:
                raise DataError(f"{path_hint} record {i} needs 'image' and a 'caption' list (one record per image)")
            images.append(self._image_path(image_root, rec["image"]))
            texts += [pre_caption(c, self.max_words) for c in rec["caption"]]
            txt2img += [i] * len(rec["caption"])
        return RetrievalData(images, texts, np.array(txt2img))

    def load(self):
        image_root, ann_root = self._roots()
        train, val, test = (self._annotation(ann_root, s) for s in ("train", "val", "test"))
        return (self._train(train, image_root, f"{self.dataset} train"),
                self._eval(val, image_root, f"{self.dataset} val"),
                self._eval(test, image_root, f"{self.dataset} test"))


@BENCHMARKS.register("coco")
def coco(**options) -> KarpathyRetrieval:
    return KarpathyRetrieval(name="coco", tier="real", dataset="coco", default_backbone="hf",
                             description="MSCOCO 5K Karpathy test (real data)", **options)


@BENCHMARKS.register("flickr30k")
def flickr30k(**options) -> KarpathyRetrieval:
    return KarpathyRetrieval(name="flickr30k", tier="real", dataset="flickr30k", default_backbone="hf",
                             description="Flickr30K 1K Karpathy test (real data)", **options)
