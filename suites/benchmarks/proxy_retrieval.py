"""Proxy-tier retrieval: synthetic scenes shifted from the pretraining distribution.

``proxy-coco`` mirrors MSCOCO's protocol (5 captions per image, the larger training set) and
``proxy-flickr`` Flickr30K's (a smaller training set); neither contains any real image or caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from suites.benchmarks import BENCHMARKS, RetrievalBenchmark
from suites.synthetic import world
from suites.synthetic.pretrain import split_data

DATA_SEED = 12345  # the benchmark's data is fixed; trial seeds change only the training


@dataclass
class ProxyRetrieval(RetrievalBenchmark):
    shift: world.Shift = field(default_factory=world.Shift)
    train_images: int = 2000
    val_images: int = 100
    test_images: int = 300
    captions_per_image: int = 5
    data_seed: int = DATA_SEED

    def load(self):
        return _load(self.shift, self.train_images, self.val_images, self.test_images, self.captions_per_image,
                     self.data_seed)


@lru_cache(maxsize=4)
def _load(shift, n_train, n_val, n_test, captions, seed):
    return tuple(
        split_data(world.make_split(seed + k, n, captions, shift)) for k, n in enumerate((n_train, n_val, n_test))
    )


@BENCHMARKS.register("proxy-coco")
def proxy_coco(**options) -> ProxyRetrieval:
    """Options override the fields of ``ProxyRetrieval`` (sizes, shift)."""
    defaults = dict(
        name="proxy-coco",
        description="synthetic scenes, MSCOCO-style protocol (5 captions/image); held-out colour-shape pairs, "
        "striped backgrounds, new caption templates and synonyms",
        shift=world.Shift(held_out_pairs=True, background="stripes", background_strength=0.5, noise=0.06,
                          new_template_frac=0.5, synonym_frac=0.5),
        train_images=2000,
    )
    return ProxyRetrieval(**{**defaults, **options})


@BENCHMARKS.register("proxy-flickr")
def proxy_flickr(**options) -> ProxyRetrieval:
    defaults = dict(
        name="proxy-flickr",
        description="synthetic scenes, Flickr30K-style protocol (smaller training set); checkerboard "
        "backgrounds, new caption templates and synonyms",
        shift=world.Shift(held_out_pairs=False, background="checker", background_strength=0.5, noise=0.06,
                          new_template_frac=0.5, synonym_frac=0.5),
        train_images=1000,
    )
    return ProxyRetrieval(**{**defaults, **options})


@BENCHMARKS.register("test-tiny")
def test_tiny(**options) -> ProxyRetrieval:
    """proxy-coco at test size (24 training images, 2 captions each) on the random-init ``test-tiny`` backbone:
    the benchmark every test that runs whole trials uses."""
    defaults = dict(name="test-tiny", description="proxy-coco at unit-test size, random-init tiny backbone",
                    default_backbone="test-tiny", train_images=24, val_images=6, test_images=12,
                    captions_per_image=2, k_test=4)
    return proxy_coco(**{**defaults, **options})
