"""A small text encoder for captions: words → token ids → one vector per caption.

Lesson: notebooks/10_colour_transformers_text.ipynb

Large image models read prompts with a big pretrained encoder (CLIP's or T5's, frozen). The
course trains its own, jointly with the denoiser, from the ~1,500 emoji captions: the diffusion
loss is the only teacher, so the encoder learns exactly what helps to denoise.

**Word level, not characters.** The captions come from a closed vocabulary (Unicode's CLDR
annotations: "red apple", "smiling face with heart-eyes"), about 1,000 words, most seen several
times. A character-level encoder would first have to learn spelling, from 1,500 short strings;
a word-level one starts from the words. The price: a word never seen in training is one
"unknown" token, and the model says so (``unknown_words``).

==============  ===============================================================================
token id        meaning
==============  ===============================================================================
0               padding; a caption of only padding is the *empty caption*, the "no caption"
                that classifier-free guidance compares with (``null_label = 0``)
1               a word not in the vocabulary
2, 3, ...       the vocabulary's words, most frequent first
==============  ===============================================================================

The encoder: word embeddings plus learned positions, a start token prepended (so even the
empty caption has one token to attend to), ``depth`` pre-norm transformer layers with the
padding masked out, and the start token's output as the caption's vector (BERT's [CLS] pooling).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["PAD", "UNKNOWN", "TextEncoder", "build_vocabulary", "split_words", "tokenize"]

PAD, UNKNOWN = 0, 1  # token ids; the vocabulary's words start at 2
_WORD = re.compile(r"[a-z0-9]+")


def split_words(caption: str) -> list[str]:
    """Lower-case words of a caption: "Smiling face with heart-eyes" → smiling, face, with, heart, eyes.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    if not isinstance(caption, str):
        raise ValueError(f"a caption must be a str, got {type(caption).__name__}")
    return _WORD.findall(caption.lower())


def build_vocabulary(captions: Iterable[str], min_count: int = 1) -> tuple[str, ...]:
    """The words of ``captions`` seen at least ``min_count`` times, most frequent first (ties: alphabetical).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    counts = Counter(w for c in captions for w in split_words(c))
    return tuple(w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count)


def tokenize(captions: Sequence[str] | str, words: Sequence[str], length: int) -> Tensor:
    """Token ids (B, length) int64 of each caption: its words' ids, cut at ``length``, padded with 0.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    if isinstance(captions, str):
        captions = [captions]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    index = {w: i + 2 for i, w in enumerate(words)}
    ids = torch.full((len(captions), length), PAD, dtype=torch.long)
    for row, caption in enumerate(captions):
        tokens = [index.get(w, UNKNOWN) for w in split_words(caption)][:length]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids


class TextEncoder(nn.Module):
    """Token ids (B, L) → one vector per caption (B, dim), trained with the denoiser.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    def __init__(self, vocab_size: int, length: int, dim: int, depth: int = 2, heads: int = 4):
        super().__init__()
        self.vocab_size, self.length = vocab_size, length
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))  # the start token, prepended to every caption
        self.position = nn.Parameter(torch.zeros(1, length + 1, dim))
        nn.init.normal_(self.start, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> Tensor:  # ids (B, L) → (B, dim)
        x = torch.cat([self.start.expand(ids.shape[0], -1, -1), self.embed(ids)], dim=1)  # (B, 1+L, dim)
        x = x + self.position
        pad = torch.cat([torch.zeros_like(ids[:, :1], dtype=torch.bool), ids == PAD], dim=1)  # (B, 1+L): True = ignore
        x = self.layers(x, src_key_padding_mask=pad)
        return self.norm(x[:, 0])  # the start token's output: the caption's vector, (B, dim)
