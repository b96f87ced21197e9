"""Backbones: the models methods adapt, built by name (``build_backbone``)."""

from suites.backbones.base import BACKBONES, Backbone, BackboneUnavailable, build_backbone

__all__ = ["BACKBONES", "Backbone", "BackboneUnavailable", "build_backbone"]
