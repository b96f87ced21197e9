"""The model passes every task shares: visual tokens (frames side by side), the image-grounded text pass, and
text passes over groups of similar length.

Shapes: B items, T frames per clip, N tokens per frame, L text length, d hidden.
"""

from __future__ import annotations

from collections.abc import Callable

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


# What one more text pass costs, in padded token positions (rows x columns): on the CPU, a pass of the proxy
# model's text encoder (forward and backward) costs about as much as 200 more positions. Where a batch's
# captions differ in length, groups of similar length padded to their own longest save more than that.
PASS_COST_POSITIONS = {"cpu": 192}


def length_groups(widths: list[int], pass_cost: int) -> list[slice]:
    """Rows sorted by width (ascending) cut into consecutive groups, each padded to its own widest, with the
    fewest padded positions plus ``pass_cost`` per group -> the groups as slices of the sorted rows.

    A group only ends where the width changes, so the search runs over the distinct widths (a few dozen)."""
    ends = [i for i in range(1, len(widths) + 1) if i == len(widths) or widths[i] != widths[i - 1]]
    cost, start_of = {0: 0}, {}
    for end in ends:  # the cheapest cut of rows [0, end), its last group starting at start_of[end]
        cost[end], start_of[end] = min((cost[s] + (end - s) * widths[end - 1] + pass_cost, s)
                                       for s in [0, *ends] if s < end)
    groups, end = [], len(widths)
    while end > 0:
        groups.append(slice(start_of[end], end))
        end = start_of[end]
    return groups[::-1]


def by_length(fn: Callable[..., torch.Tensor], ids: torch.Tensor, mask: torch.Tensor,
              *rows: torch.Tensor) -> torch.Tensor:
    """``fn(ids, mask, *rows)`` -> (P, ...) row by row, computed over groups of rows of similar length, each cut
    to the columns its rows use (``length_groups``), and put back in the rows' order.

    Padded columns are masked out of every attention, so only float rounding (and the draws of a method's
    dropout, taken per group) differ from one pass over the whole batch. Devices whose pass cost is unmeasured
    (GPUs) keep one pass."""
    cost = PASS_COST_POSITIONS.get(ids.device.type)
    if cost is None or len(ids) < 2:
        return fn(ids, mask, *rows)
    columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    widths = (mask.bool() * columns).amax(1)  # (P,) through each row's last attended column
    order = torch.argsort(widths, stable=True)
    sorted_widths = widths[order].tolist()
    outputs = []
    for group in length_groups(sorted_widths, cost):
        picked, width = order[group], sorted_widths[group.stop - 1]
        outputs.append(fn(ids[picked, :width], mask[picked, :width], *(r[picked] for r in rows)))
    return torch.cat(outputs)[torch.argsort(order)]
