"""The proxy-tier backbone: the tiny BLIP the suite pretrains on synthetic scenes (cached on disk)."""

from __future__ import annotations

from suites.backbones import BACKBONES, Backbone


@BACKBONES.register("proxy")
def proxy(seed: int = 0, cache_dir: str | None = None, task: str = "retrieval") -> Backbone:
    """The tiny proxy-tier BLIP, pretrained by the suite on synthetic scenes (cached on disk); for VQA,
    grown from it with an answer decoder pretrained on synthetic questions."""
    if task == "vqa":
        from suites.synthetic.pretrain_vqa import load_or_pretrain_vqa

        return load_or_pretrain_vqa(seed=seed, cache_dir=cache_dir)
    from suites.synthetic.pretrain import load_or_pretrain

    return load_or_pretrain(seed=seed, cache_dir=cache_dir)
