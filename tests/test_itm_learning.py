"""ITM must learn on the proxy tier: a learning test on the smallest proxy configuration (fixed seed)."""

import math

from suites.engine.loop import TrainConfig
from suites.synthetic.pretrain import PretrainConfig, ProxyModelConfig, pretrain

# The ITM prior: one positive and two negatives per anchor -> entropy of (1/3, 2/3).
PRIOR = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))


def test_itm_loss_falls_well_below_the_prior():
    cfg = PretrainConfig(
        seed=0, n_images=150, eval_images=40,
        model=ProxyModelConfig(hidden=64, layers=2, heads=2, mlp=256, proj=32),
        train=TrainConfig(steps=300, batch_size=32, lr=1e-3, warmup=20, eval_every=50), k_test=4,
    )
    _, info = pretrain(cfg, progress=False)
    assert abs(PRIOR - 0.6365) < 1e-3
    assert info["itm_loss"] < PRIOR - 0.1, info["itm_loss"]


def test_a_none_setting_leaves_the_backbone_cache_key_unchanged():
    # A setting added later with a None default ("as before") must not orphan every cached proxy backbone.
    from dataclasses import dataclass, make_dataclass

    from suites.synthetic.pretrain import cache_key, settings

    @dataclass
    class Old:
        steps: int = 3

    New = make_dataclass("New", [("steps", int, 3), ("later", float | None, None)])
    assert settings(New()) == settings(Old()) == {"steps": 3}
    assert cache_key(settings(New(later=0.5))) != cache_key(settings(Old()))
