"""The proxy backbone cache: every entry sealed with checksums; a damaged, truncated or incomplete entry is
rebuilt, saying why in one line, never silently used."""

from __future__ import annotations

import pytest

from suites.engine.loop import TrainConfig
from suites.synthetic.pretrain import CHECKSUMS, PretrainConfig, ProxyModelConfig, cache_root, load_or_pretrain

SMALL = PretrainConfig(n_images=16, eval_images=4, model=ProxyModelConfig(hidden=32, layers=1, heads=2, mlp=64, proj=16),
                       train=TrainConfig(steps=2, batch_size=8, warmup=1, eval_every=2), k_test=2)


def corrupt_zeroed(path):
    data = bytearray(path.read_bytes())
    data[-1024:] = bytes(1024)  # same size, other weights
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, why", [
    (corrupt_zeroed, "does not match its checksum"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "does not match its checksum"),
    (lambda p: p.unlink(), "is missing"),
    (lambda p: (p.parent / CHECKSUMS).unlink(), "has no checksums"),
])
def test_a_damaged_cache_entry_is_rebuilt_saying_why(tmp_path, monkeypatch, capsys, damage, why):
    monkeypatch.setenv("AURORA_CACHE", str(tmp_path))
    first = load_or_pretrain(cfg=SMALL, progress=False)
    assert "cached" in load_or_pretrain(cfg=SMALL, progress=False).source  # a sound entry is used as it is
    weights = next(tmp_path.rglob("model.safetensors"))
    damage(weights)
    capsys.readouterr()
    rebuilt = load_or_pretrain(cfg=SMALL, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and "rebuilding" in err[0]
    assert "cached" not in rebuilt.source
    for (name, p), (_, q) in zip(first.model.named_parameters(), rebuilt.model.named_parameters()):
        assert p.equal(q), name  # pretraining is deterministic: the rebuilt entry is the original one
    assert "cached" in load_or_pretrain(cfg=SMALL, progress=False).source


def test_the_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("AURORA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "aurora-bench"
    monkeypatch.setenv("AURORA_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
