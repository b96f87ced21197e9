"""The Aurora method: config, layers and ``apply``; importing this package registers ``aurora``."""

from aurora.method.config import AuroraConfig
from aurora.method.model import Aurora

__all__ = ["Aurora", "AuroraConfig"]
