import os
import sys

import numpy as np
import pytest
import torch

# No test may reach a hub; tests that need a cache get their own.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri():
    """``mlflow.set_tracking_uri`` writes MLFLOW_TRACKING_URI into os.environ; a later test (or the suite
    driver subprocess it starts) would inherit that store. Put the variable and MLflow's global back."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and utils._tracking_uri is not None:
        utils.set_tracking_uri(None)  # MLflow's in-process URI, and with it the variable
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def tiny():
    """A fresh random-weight tiny BLIP backbone."""
    from suites.backbones import build_backbone

    return build_backbone("test-tiny")


@pytest.fixture
def tiny_batch(tiny):
    """4 (image, caption) pairs for the tiny backbone, with an all-distinct truth matrix."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    tok = tiny.tokenize(["a red circle", "two blue squares left", "a green ring at the top", "nothing here"])
    return {"pixels": tiny.pixels(images), **tok, "truth": torch.eye(4, dtype=torch.bool)}
