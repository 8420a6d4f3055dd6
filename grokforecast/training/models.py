"""Models of the grokking literature, each mapping a batch of inputs to class logits.

Each MLP also has ``forward_stacked(params, inputs)``: the forward of K copies of the model
at once, their parameters stacked along a leading dimension (``{name: [K, *shape]}``, as
``named_parameters`` names them) and their inputs too (``[K, rows, ...]``), written as
batched matmuls. A :class:`~grokforecast.training.population.Population` trains with it;
it computes what ``forward`` computes per copy, and on a CPU its forward and backward run
~1.2x faster than ``vmap`` over ``forward`` (64 small MLPs: 10 ms against 12), whose
batched ReLU and embedding gradients take strided loops. A model without it (the
transformer) is trained under ``vmap``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

Stack = Mapping[str, torch.Tensor]


def _linear_stacked(params: Stack, name: str, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear`` ``name`` of K stacked copies on ``x`` of shape ``[K, rows, in]``."""
    weight, bias = params[f"{name}.weight"].transpose(1, 2), params.get(f"{name}.bias")
    return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight)


def _embedding_stacked(params: Stack, name: str, indices: torch.Tensor) -> torch.Tensor:
    """``nn.Embedding`` ``name`` of K stacked copies on ``indices`` of shape ``[K, ...]``:
    one lookup in the K tables laid end to end (whose gradient is the lone embedding's
    kernel, ~4x faster on a CPU than indexing the stack)."""
    table = params[f"{name}.weight"]
    k, rows = table.shape[:2]
    offsets = torch.arange(k, device=indices.device).mul_(rows).view(-1, *[1] * (indices.dim() - 1))
    return F.embedding(indices + offsets, table.reshape(k * rows, -1))


def _embedded_linear_stacked(
    table: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """``linear(embedding(tokens).flatten(-2))`` of K stacked copies (``table`` of shape
    ``[K, p, dim]``, ``weight`` ``[K, hidden, positions * dim]``, ``bias`` ``[K, hidden]``,
    ``tokens`` ``[K, rows, positions]``), computed as one lookup per position.

    The linear layer's columns for position ``j`` act on the embedding alone, so they are
    applied to the ``p`` rows of the table once (``table @ W_j^T``, p x hidden) and each
    row of the batch picks its token's row: the same sum, rounded differently (a relative
    1e-6), without the rows x (positions * dim) x hidden matmul, forward and backward.
    For the quickstart's model (700-2,400 rows, p = 59) that matmul is 2/3 of a training
    step's FLOPs; computed as a lookup, a step is 1.2-1.6x faster.
    """
    k, rows, width = table.shape
    offsets = torch.arange(k, device=tokens.device).mul_(rows).unsqueeze(1)
    hidden = bias.unsqueeze(1)
    for position in range(tokens.shape[-1]):
        columns = weight[:, :, position * width : (position + 1) * width]
        projected = torch.bmm(table, columns.transpose(1, 2)).reshape(k * rows, -1)
        picked = projected.index_select(0, (tokens[..., position] + offsets).flatten())
        hidden = hidden + picked.view(k, tokens.shape[1], -1)
    return hidden


#: Multiply-adds of an embedded linear layer (rows x its weight's size, every copy stacked)
#: from which computing it as a lookup (:func:`_embedded_linear_stacked`) is faster on a
#: CPU: measured 0.7-0.9x at 1.1 M (the small model alone), 1.2x at 4.3 M (four of them
#: stacked), 1.2-1.6x at 23-79 M (the quickstart's model alone).
LOOKUP_MIN_MACS = 2**21


def _lookup_pays(rows: int, weight: torch.Tensor) -> bool:
    """Whether an embedded linear layer of ``weight`` over ``rows`` rows in all is computed
    faster as a lookup than as a matmul (below :data:`LOOKUP_MIN_MACS`, the lookup's extra
    operations cost more than the matmul it saves)."""
    return rows * weight.numel() >= LOOKUP_MIN_MACS


def _sequential_stacked(layers: nn.Sequential, params: Stack, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """A ``Sequential`` of ``Linear`` and ``ReLU`` layers, of K stacked copies."""
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            x = _linear_stacked(params, f"{prefix}.{index}", x)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        else:
            raise TypeError(f"no stacked forward for a {type(layer).__name__} layer")
    return x


class EmbeddingMLP(nn.Module):
    """Embed both operands, concatenate, one hidden ReLU layer: the CPU grokking workhorse."""

    def __init__(self, p: int, embed_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, embed_dim)
        self.hidden = nn.Linear(2 * embed_dim, hidden)
        self.out = nn.Linear(hidden, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        if _lookup_pays(len(pairs), self.hidden.weight):
            one = (self.embed.weight, self.hidden.weight, self.hidden.bias, pairs)
            hidden = _embedded_linear_stacked(*(tensor.unsqueeze(0) for tensor in one))[0]
        else:
            hidden = self.hidden(self.embed(pairs).flatten(1))
        return self.out(torch.relu(hidden))

    def forward_stacked(self, params: Stack, pairs: torch.Tensor) -> torch.Tensor:
        weight = params["hidden.weight"]
        if _lookup_pays(pairs.shape[0] * pairs.shape[1], weight[0]):
            hidden = _embedded_linear_stacked(params["embed.weight"], weight, params["hidden.bias"], pairs)
        else:
            hidden = _linear_stacked(params, "hidden", _embedding_stacked(params, "embed", pairs).flatten(2))
        return _linear_stacked(params, "out", torch.relu(hidden))


class QuadraticMLP(nn.Module):
    """``f(m, n) = W (U e_m + V e_n) ** 2`` without biases (Gromov 2023; Doshi et al. 2023)."""

    def __init__(self, p: int, width: int = 500) -> None:
        super().__init__()
        self.u = nn.Embedding(p, width)
        self.v = nn.Embedding(p, width)
        self.w = nn.Linear(width, p, bias=False)
        # Gromov's initialization: every weight ~ N(0, 1 / fan_in).
        nn.init.normal_(self.u.weight, std=p**-0.5)
        nn.init.normal_(self.v.weight, std=p**-0.5)
        nn.init.normal_(self.w.weight, std=width**-0.5)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.w((self.u(pairs[:, 0]) + self.v(pairs[:, 1])) ** 2)

    def forward_stacked(self, params: Stack, pairs: torch.Tensor) -> torch.Tensor:
        u, v = _embedding_stacked(params, "u", pairs[..., 0]), _embedding_stacked(params, "v", pairs[..., 1])
        return _linear_stacked(params, "w", (u + v) ** 2)


def _operation_tokens(pairs: torch.Tensor, op_token: int, eq_token: int) -> torch.Tensor:
    """The sequence ``x op y =`` of each pair ``(x, y)``, as token ids (``[rows, 4]``)."""
    n = pairs.shape[0]
    return torch.stack(
        [pairs[:, 0], pairs.new_full((n,), op_token), pairs[:, 1], pairs.new_full((n,), eq_token)], dim=1
    )


class ArithmeticTransformer(nn.Module):
    """Decoder-only transformer on ``x op y =`` (Power et al. 2022), logits of the answer.

    The sequence is the two operands, an operation token and an equals token; a causal
    mask makes it a decoder, and the logits at the equals position are the prediction
    (the answer-token loss).
    """

    def __init__(self, p: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        self.op_token, self.eq_token = p, p + 1
        self.tokens = nn.Embedding(p + 2, d_model)
        self.positions = nn.Parameter(torch.randn(4, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, p, bias=False)
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(4))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        h = self.tokens(_operation_tokens(pairs, self.op_token, self.eq_token)) + self.positions
        h = self.blocks(h, mask=self.causal_mask, is_causal=True)
        return self.head(self.norm(h[:, -1]))


class ArithmeticGRU(nn.Module):
    """A gated recurrent network reading ``x op y =`` one token at a time, logits of the
    answer from its last state: a model family with no attention and no MLP over a
    concatenated pair.

    The cell is written out (``torch.nn.GRU``'s equations: reset and update gates, a
    candidate state) rather than taken from ``nn.GRU``, whose fused kernel has no batching
    rule, so that a :class:`~grokforecast.training.population.Population` trains it under
    ``vmap`` like any other model.
    """

    def __init__(self, p: int, embed_dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.op_token, self.eq_token, self.hidden_size = p, p + 1, hidden
        self.tokens = nn.Embedding(p + 2, embed_dim)
        self.input_gates = nn.Linear(embed_dim, 3 * hidden)
        self.state_gates = nn.Linear(hidden, 3 * hidden)
        self.head = nn.Linear(hidden, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        sequence = _operation_tokens(pairs, self.op_token, self.eq_token)
        state = pairs.new_zeros((pairs.shape[0], self.hidden_size), dtype=self.head.weight.dtype)
        for token in sequence.unbind(dim=1):
            reset_in, update_in, candidate_in = self.input_gates(self.tokens(token)).chunk(3, dim=-1)
            reset_st, update_st, candidate_st = self.state_gates(state).chunk(3, dim=-1)
            reset = torch.sigmoid(reset_in + reset_st)
            update = torch.sigmoid(update_in + update_st)
            candidate = torch.tanh(candidate_in + reset * candidate_st)
            state = (1 - update) * candidate + update * state
        return self.head(state)


class ParityMLP(nn.Module):
    """One hidden ReLU layer over +-1 bit strings, two logits (Barak et al. 2022's sparse parity net)."""

    def __init__(self, n_bits: int, hidden: int = 256) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_bits, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        return self.layers(bits)

    def forward_stacked(self, params: Stack, bits: torch.Tensor) -> torch.Tensor:
        return _sequential_stacked(self.layers, params, "layers", bits)


class DigitsMLP(nn.Module):
    """Omnigrok's 3-layer ReLU MLP, sized for 8x8 digits."""

    def __init__(self, width: int = 200, n_inputs: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_inputs, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, n_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)

    def forward_stacked(self, params: Stack, images: torch.Tensor) -> torch.Tensor:
        return _sequential_stacked(self.layers, params, "layers", images)


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions over the 8x8 digit (the second of stride 2), then a linear
    read-out: a convolutional family, whose weights are shared across the image, unlike
    every MLP, the transformer and the GRU. With a large init scale it fits its training
    images late, and generalizes about then (within a few hundred steps either way), once
    weight decay has shrunk the weights."""

    def __init__(self, channels: int = 8, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * channels * 4 * 4, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images.reshape(-1, 1, 8, 8)).flatten(1))
