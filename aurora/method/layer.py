"""Aurora's modules: the shared factors, the wrapped Linear layers and GQT.

Shapes: x (..., d) activations, U: d -> R, V: R -> d, core G (R, R, R), a mode vector p (R,).
"""

from __future__ import annotations

import torch
from torch import nn


class SharedFactors(nn.Module):
    """U, V and the core, owned once by the model (``model.aurora_shared``) and read by every wrapped layer."""

    def __init__(self, d: int, rank: int, core: str):
        super().__init__()
        self.rank, self.core_kind = rank, core
        self.U = nn.Linear(d, rank, bias=False)  # default Kaiming-uniform, as the official code
        self.V = nn.Linear(rank, d, bias=False)
        nn.init.zeros_(self.V.weight)  # every delta is exactly zero at step 0
        if core == "dense":
            self.core = nn.Parameter(torch.empty(rank, rank, rank))
            nn.init.xavier_uniform_(self.core)  # torch takes fan_in = fan_out = R^2 for a 3-D tensor
        else:
            # CP: a super-diagonal core lambda; 1 is neutral because V = 0 zeroes every delta anyway.
            self.core = nn.Parameter(torch.ones(rank))

    def modes(self, p: torch.Tensor) -> torch.Tensor:
        """M = G x_3 p for each column of p (R, k) -> (R, R, k)."""
        if self.core_kind == "dense":
            return torch.einsum("abc,ck->abk", self.core, p)
        return torch.diag_embed((self.core[:, None] * p).T).permute(1, 2, 0)  # (k, R, R) -> (R, R, k)


def mode_vectors(rank: int, k: int) -> torch.Tensor:
    """One (R, k) tensor of mode vectors, drawn as the official code draws each of its mode-vector tensors:
    ``nn.init.xavier_uniform_`` over the whole (R, k) shape, i.e. U(-b, b) with b = sqrt(6 / (R + k)), k
    uniform draws per row in row-major order, b computed by torch's own arithmetic (bit-for-bit the same).

    The official code draws R x 4 per ViT attention block (q, k, v, proj), R x 8 per ViT MLP (fc1 chunks
    0-3, fc2 chunks 4-7) and R x 1 per BERT q, k, v; ``Aurora.apply`` draws them in its order (see model.py).
    """
    return nn.init.xavier_uniform_(torch.zeros(rank, k))


class _Adapted(nn.Module):
    """A frozen Linear plus Aurora's delta; ``base`` keeps the original module and its parameter names.

    Subclasses give the layer's mode vectors ``p`` (R, k) and compute the rank-R ``bottleneck`` (..., k, R):
    one R-vector per d-wide chunk of the output. ``forward`` maps it through the shared V and adds it to the
    frozen output in one fused GEMM (``addmm``), so the (..., k*d) delta is never materialised on its own.
    """

    def __init__(self, base: nn.Linear, shared: SharedFactors, dropout: float):
        super().__init__()
        self.base = base
        self._shared = (shared,)  # a tuple, so the shared factors are not registered (or saved) per layer
        self.drop = nn.Dropout(dropout)
        self.skip_delta = False  # set by decode_delta="official" while a KV cache holds earlier positions
        self.merged = False  # the delta is folded into base.weight (evaluation)

    @property
    def shared(self) -> SharedFactors:
        return self._shared[0]

    @property
    def p(self) -> torch.Tensor:
        """The layer's mode vectors (R, k), one column per d-wide chunk of its output (or input, for fc2)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., k*d)
        if self.skip_delta or self.merged:
            return out
        h = self.bottleneck(x)  # (..., k, R)
        V = self.shared.V.weight  # (d, R)
        # (..., k*d) viewed as (N*k, d): row n*k + j is chunk j of token n, matching h's (N*k, R) rows
        fused = torch.addmm(out.reshape(-1, V.shape[0]), h.reshape(-1, V.shape[1]), V.T)
        return fused.view(out.shape)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """dW (k*d, d_in), read off the layer itself: the delta is linear in x (dropout is off in eval), so its
        output on the identity's rows is dW^T."""
        eye = torch.eye(self.base.in_features, device=self.base.weight.device)
        with torch.autocast(eye.device.type, enabled=False):
            return (self(eye) - self.base(eye)).T

    @torch.no_grad()
    def merge(self) -> torch.Tensor:
        """W += dW and the delta path off; -> the original W, to restore."""
        original = self.base.weight.detach().clone()
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True
        return original

    @torch.no_grad()
    def unmerge(self, original: torch.Tensor) -> None:
        self.base.weight.copy_(original)
        self.merged = False


class _BlockColumns(_Adapted):
    """A ViT layer whose mode vectors are ``columns`` of one tensor of its block, as in the official code:
    ``owner.<name>`` (R, n), registered (and saved) once on the block's attention or MLP module and read here
    as a slice, so the gradient of every layer reading it lands in that one tensor, in the layer's columns.
    The owner is held in a tuple (not registered) and the tensor looked up by name at every call."""

    def __init__(self, base: nn.Linear, shared: SharedFactors, dropout: float, owner: nn.Module, name: str,
                 columns: slice):
        super().__init__(base, shared, dropout)
        self._owner, self._name, self.columns = (owner,), name, columns

    @property
    def p(self) -> torch.Tensor:
        return getattr(self._owner[0], self._name)[:, self.columns]  # a view: (R, k)


class ViTLinear(_BlockColumns):
    """ViT q/k/v (fused, k = 3) or output projection (k = 1): dW = drop(x U M) V^T, dropout after the core."""

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shared
        modes = s.modes(self.p)  # (R, R, k)
        return self.drop(torch.einsum("...r,rsk->...ks", s.U(x), modes))  # (..., k, R): q, k, v in fused order


class TextLinear(_Adapted):
    """BERT q, k or v (k = 1): dW = (drop(x U) M) V^T, dropout before the core as in the official code.

    Owns its R x 1 mode vector ``aurora_p``, as the official code (``q_CP``, ``k_CP``, ``v_CP`` of each
    ``BertSelfAttention``, one xavier-uniform R x 1 draw each, in the order q, k, v)."""

    def __init__(self, base: nn.Linear, shared: SharedFactors, dropout: float):
        super().__init__(base, shared, dropout)
        self.aurora_p = nn.Parameter(mode_vectors(shared.rank, 1))

    @property
    def p(self) -> torch.Tensor:
        return self.aurora_p

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shared
        return self.drop(s.U(x)) @ s.modes(self.p)[..., 0]  # (..., R)


class MlpIn(_BlockColumns):
    """ViT fc1 (d -> c*d) as c chunks, with the official code's chunk interleaving (the reshape below)."""

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        s, c = self.shared, p.shape[1]
        f1 = s.modes(p).reshape(s.rank, -1)  # (R, c*R), column index b*c + j (row-major)
        z = self.drop(s.U(x) @ f1)  # (..., c*R)
        return z.unflatten(-1, (c, s.rank))  # chunk k takes columns [kR, (k+1)R) -> hidden units [k*d, (k+1)*d)


class MlpOut(_BlockColumns):
    """ViT fc2 (c*d -> d), reading the hidden state as c chunks of d."""

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        s, c = self.shared, p.shape[1]
        f2 = s.modes(p).reshape(s.rank, -1)  # (R, c*R)
        y = s.U(x.unflatten(-1, (c, -1))).flatten(-2)  # (..., c*R), index k*R + r
        return self.drop(y @ f2.T)  # (..., R)


class GatedQuery(nn.Module):
    """GQT for one text layer: y + g*(a_s * gamma_s + beta_s) + g*(a_c * gamma_c + beta_c).

    Active only in calls where the layer's cross-attention ran (image-grounded mode); a_s and a_c are the
    outputs of the self- and cross-attention sub-layers, captured by forward hooks during the same call.
    """

    def __init__(self, d: int, scale: float, init_std: float):
        super().__init__()
        self.scale = scale
        self.aurora_gqt = nn.Parameter(torch.randn(4, d) * init_std)  # gamma_s, beta_s, gamma_c, beta_c
        self._a_s = self._a_c = None

    def attach(self, layer: nn.Module, self_attention: nn.Module, cross_attention: nn.Module) -> None:
        """Hook the text layer and its two attention sub-layers (each returns (output, ...))."""
        layer.aurora_gqt = self
        layer.register_forward_pre_hook(self._reset)
        self_attention.register_forward_hook(lambda m, i, out: setattr(self, "_a_s", out[0]))
        cross_attention.register_forward_hook(lambda m, i, out: setattr(self, "_a_c", out[0]))
        layer.register_forward_hook(self._add)

    def _reset(self, module, args):
        self._a_s = self._a_c = None

    def _add(self, module, args, output):
        a_s, a_c = self._a_s, self._a_c
        self._a_s = self._a_c = None  # do not keep activations alive past the call
        if a_c is None:  # text-only (ITC) pass: GQT off
            return output
        gs, bs, gc, bc = self.aurora_gqt
        return output + self.scale * (a_s * gs + bs) + self.scale * (a_c * gc + bc)
