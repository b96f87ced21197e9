"""Refresh the proxy backbones the package ships: ``python -m suites.synthetic.bundle [proxy] [proxy-vqa]``.

Copies the current recipe's cache entry (pretraining it first where the cache has none, ignoring any bundled
copy) into ``bundled/<label>/<key>/`` and removes the label's entries of older recipes, so the package holds
exactly one entry per recipe it can use. ``tests/test_bundled.py`` checks what is shipped against the recipes;
``nox -s verify-proxy`` rebuilds it and compares.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable

from suites.synthetic.pretrain import BUNDLED, PretrainConfig, cache_root, damage, load_or_pretrain
from suites.synthetic.pretrain_vqa import QAPretrainConfig, load_or_pretrain_vqa


def recipes() -> dict[str, tuple[Callable[[], str], Callable[[], object]]]:
    """label -> (the current recipe's cache key, a loader that builds the entry into the cache)."""
    return {"proxy": (lambda: PretrainConfig().key(), lambda: load_or_pretrain()),
            "proxy-vqa": (lambda: QAPretrainConfig().key(), lambda: load_or_pretrain_vqa())}


def refresh(label: str) -> str:
    """Bundle the current ``label`` entry; -> its key."""
    key_of, build = recipes()[label]
    os.environ["AURORA_BUNDLED"] = "0"  # the entry must come from the recipe or a cache it built, not the bundle
    build()
    entry = cache_root() / label / key_of()
    if (why := damage(entry)) is not None:
        raise RuntimeError(f"the cache entry {entry} cannot be bundled: {why}")
    for old in (BUNDLED / label).glob("*"):
        shutil.rmtree(old)
    shutil.copytree(entry, BUNDLED / label / entry.name)
    return entry.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="*", default=list(recipes()), choices=list(recipes()))
    for label in parser.parse_args(argv).labels:
        print(f"bundled {label} {refresh(label)} -> {BUNDLED / label}")


if __name__ == "__main__":
    main()
