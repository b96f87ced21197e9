"""The model passes every task shares: visual tokens (frames side by side) and the image-grounded text pass.

Shapes: B items, T frames per clip, N tokens per frame, L text length, d hidden.
"""

from __future__ import annotations

import torch
from torch import nn

from aurora import arch


def frame_tokens(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, S, S) -> (B, N, d); clips (B, T, 3, S, S) -> (B*T, N, d): every frame through the ViT
    on its own. Frames of another size than the ViT's position embeddings were made for (video at 224 px on a
    384 px checkpoint) get those embeddings interpolated to their grid."""
    frames = pixels.flatten(0, 1) if pixels.ndim == 5 else pixels
    tower = arch.vision_tower(model)
    return tower(pixel_values=frames, **_position_options(tower, frames)).last_hidden_state


def _position_options(tower: nn.Module, frames: torch.Tensor) -> dict:
    """``interpolate_pos_encoding`` where the frames are not the tower's configured size: transformers' BLIP
    then resizes the patch position embeddings to the frames' grid for this pass (bicubic, as BLIP's loader
    resizes them once at load time). Nothing where the sizes agree, so same-size passes are untouched."""
    size = getattr(getattr(tower, "config", None), "image_size", None)
    if size is None or tuple(frames.shape[-2:]) == (size, size):
        return {}
    return {"interpolate_pos_encoding": True}


def side_by_side(tokens: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B*T, N, d) frame tokens -> (B, T*N, d): cross-attention reads all of a clip's frames at once. Nothing
    marks which frame a token came from, so a clip is a *set* of frames to the model."""
    return tokens.reshape(n_items, -1, tokens.shape[-1])


def visual_tokens(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, S, S) -> (B, N, d); clips (B, T, 3, S, S) -> (B, T*N, d)."""
    return side_by_side(frame_tokens(model, pixels), pixels.shape[0])


def image_grounded(model: nn.Module, visual: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                   enc_token_id: int) -> torch.Tensor:
    """The text encoder over ``ids`` (P, L), cross-attending to ``visual`` (P, N', d), with BLIP's [ENC] as
    the first token -> states (P, L, d). Every visual token is attended (the visual mask is all ones)."""
    ids = ids.clone()
    ids[:, 0] = enc_token_id
    visual_mask = torch.ones(visual.shape[:2], dtype=torch.long, device=visual.device)
    return arch.text_encoder(model)(input_ids=ids, attention_mask=mask, encoder_hidden_states=visual,
                                    encoder_attention_mask=visual_mask).last_hidden_state
