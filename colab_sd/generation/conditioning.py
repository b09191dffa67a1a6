"""Weighted prompt pieces → text-encoder conditioning, the way A1111 builds it (SD1.x, SD2.x, SDXL).

Facts borrowed from AUTOMATIC1111 (modules/sd_hijack_clip.py, sd_emphasis.py, sd_models_xl.py) and Forge
(backend/text_processing/classic_engine.py, backend/diffusion_engine/sdxl.py):

- Pieces are tokenized one by one (BPE never merges across a weight boundary), without start/end tokens, and
  packed into chunks of 75 tokens: a full chunk whose last comma sits within 20 tokens of its end moves what
  follows the comma to the next chunk; `BREAK` closes the current chunk (even an empty one); a multi-vector
  textual inversion that would cross the boundary moves whole to the next chunk. Each chunk becomes 77 ids:
  start + 75 (padded with the end token) + end; OpenCLIP tokenizers (pad "!") pad with 0 after the first end.
- Every chunk is encoded on its own, the outputs concatenated on the sequence axis: (B, 77·k, C).
- Emphasis "Original" (A1111's default): z ← z·w per token, then scaled back to the mean it had before.
  The mean is over every text encoded together: all schedule variants of one prompt share it.
- Clip skip N: SD1 uses hidden_states[-N] + final layer norm (N=1: the last hidden state). SD2 and SDXL follow
  Forge: SD2 the same rule on diffusers' 23-layer encoder; SDXL hidden_states[-max(N, 2)] without the norm for
  both encoders (so 1 and 2 are A1111's fixed penultimate layer). SDXL's pooled vector is the second encoder's
  projected output for the first chunk, taken before emphasis.
- Positive and negative of different chunk counts are repeated to their least common multiple (repeating keys
  and values leaves cross-attention unchanged, which reproduces A1111's separate cond/uncond calls); beyond 4×
  the longer one, empty chunks are appended instead (A1111's "Pad prompt/negative prompt" option).
- An SDXL negative prompt that is empty is all zeros (cross-attention and pooled), as in A1111.

The chunker is plain Python (tested without torch); torch is imported only where tensors are made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from ..errors import InputError
from .prompt_parser import at_step, parse_prompt_attention, prompt_schedule

CHUNK = 75  # tokens of text per chunk (77 with the start and end tokens)
COMMA_BACKTRACK = 20  # A1111's `comma_padding_backtrack` default
MAX_REPEAT = 4  # Forge's limit for repeating the shorter conditioning; beyond it, pad with empty chunks


@dataclass
class Chunk:
    """77 token ids and their weights (start/end/padding weigh 1.0)."""

    ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TokenizerInfo:
    """What the chunker needs from a CLIPTokenizer."""

    bos: int
    eos: int
    pad: int
    comma: Optional[int]
    embeddings: dict  # first token id → the ids of a multi-vector embedding's whole run

    @classmethod
    def of(cls, tokenizer) -> "TokenizerInfo":
        vocab = tokenizer.get_vocab()
        runs = {}
        added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
        for token in _embedding_tokens(tokenizer):
            names = [token] + [f"{token}_{i}" for i in range(1, len(added) + 1) if f"{token}_{i}" in added]
            ids = [added[n] for n in names]
            runs[ids[0]] = ids
        return cls(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id,
                   pad=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                   comma=vocab.get(",</w>"), embeddings=runs)


def _embedding_tokens(tokenizer) -> list[str]:
    """Tokens diffusers' load_textual_inversion added: "name" (its further vectors are "name_1", "name_2", …)."""
    added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    names = []
    for token in added:
        if token in special:
            continue
        stem, _, tail = token.rpartition("_")
        if stem and tail.isdigit() and stem in added:
            continue  # a further vector of `stem`
        names.append(token)
    return names


def expand_embeddings(text: str, tokenizer) -> str:
    """Multi-vector embedding names written out as their vector tokens ("emb" → "emb emb_1 emb_2"), as diffusers'
    `maybe_convert_prompt` does, so each vector gets its own position."""
    added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    if not added or not text:
        return text
    for token in _embedding_tokens(tokenizer):
        if token in text and f"{token}_1" in added:
            run, i = token, 1
            while f"{token}_{i}" in added:
                run += f" {token}_{i}"
                i += 1
            text = text.replace(token, run)
    return text


def tokenize_pieces(pieces: list[tuple[str, float]], tokenizer) -> list[list[int]]:
    """Token ids of each piece, without start/end tokens and never truncated."""
    texts = [expand_embeddings(text, tokenizer) for text, _ in pieces]
    # verbose=False: long pieces are the point here, not a mistake to warn about ("longer than 77 tokens").
    return tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]


def chunk_tokens(pieces: list[tuple[str, float]], tokens: list[list[int]], info: TokenizerInfo,
                 backtrack: int = COMMA_BACKTRACK) -> tuple[list[Chunk], int]:
    """(chunks of 77 ids and weights, token count) for tokenized pieces, as A1111's `tokenize_line`.

    The token count is 75 per closed chunk plus the length of the last one (what A1111 shows as "n/75").
    """
    chunks: list[Chunk] = []
    chunk = Chunk()
    count = 0
    last_comma = -1

    def close(is_last: bool = False) -> None:
        nonlocal chunk, count, last_comma
        count += len(chunk.ids) if is_last else CHUNK
        missing = CHUNK - len(chunk.ids)
        ids = [info.bos] + chunk.ids + [info.eos] * missing + [info.eos]
        if info.pad != info.eos:  # OpenCLIP: everything after the first end token is padding
            first_end = ids.index(info.eos)
            ids = ids[: first_end + 1] + [info.pad] * (len(ids) - first_end - 1)
        chunks.append(Chunk(ids, [1.0] + chunk.weights + [1.0] * missing + [1.0]))
        chunk = Chunk()
        last_comma = -1

    for (text, weight), ids in zip(pieces, tokens):
        if text == "BREAK" and weight == -1:
            close()
            continue
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == info.comma:
                last_comma = len(chunk.ids)
            elif (backtrack and len(chunk.ids) == CHUNK and last_comma != -1
                  and len(chunk.ids) - last_comma <= backtrack):
                cut = last_comma + 1
                moved = Chunk(chunk.ids[cut:], chunk.weights[cut:])
                del chunk.ids[cut:], chunk.weights[cut:]
                close()
                chunk = moved
            if len(chunk.ids) == CHUNK:
                close()
            run = info.embeddings.get(token)
            if run and ids[position: position + len(run)] == run:
                if len(chunk.ids) + len(run) > CHUNK:
                    close()
                chunk.ids += run
                chunk.weights += [weight] * len(run)
                position += len(run)
                continue
            chunk.ids.append(token)
            chunk.weights.append(weight)
            position += 1
    if chunk.ids or not chunks:
        close(is_last=True)
    return chunks, count


def chunk_text(text: str, tokenizer, info: Optional[TokenizerInfo] = None) -> tuple[list[Chunk], int]:
    """Chunks and token count of one prompt text (emphasis parsed, no schedule)."""
    pieces = parse_prompt_attention(text)
    return chunk_tokens(pieces, tokenize_pieces(pieces, tokenizer), info or TokenizerInfo.of(tokenizer))


def token_count(text: str, tokenizer) -> int:
    """A1111's counted tokens of a prompt (schedules resolved at their first step)."""
    return chunk_text(prompt_schedule(text, 1)[0][1], tokenizer)[1]


# ---------------------------------------------------------------------------------------------- tensors


@dataclass
class Encoded:
    """The conditioning of one prompt: one tensor per schedule entry."""

    schedule: list  # [(end_step, text), …]
    embeds: list  # per entry: (1, 77·k, C)
    pooled: list  # per entry: (1, P) for SDXL, else None

    def at(self, step: int) -> int:
        return at_step(self.schedule, step)


def _final_norm(encoder):
    inner = encoder._modules.get("text_model", encoder)
    return inner.final_layer_norm


def _encode_chunk(encoder, ids, family: str, clip_skip: int, second: bool):
    """(hidden states (n, 77, C), pooled or None) of one chunk position for n texts."""
    out = encoder(ids, output_hidden_states=True)
    hidden = out.hidden_states
    if family == "sdxl":
        layer = max(clip_skip, 2)
        if layer > len(hidden):
            raise InputError(f"clip skip {clip_skip} is more than this model's {len(hidden) - 1} text-encoder layers")
        z = hidden[-layer]
        return z, (out.text_embeds if second else None)
    if clip_skip <= 1:
        return out.last_hidden_state, None
    if clip_skip > len(hidden):
        raise InputError(f"clip skip {clip_skip} is more than this model's {len(hidden) - 1} text-encoder layers")
    return _final_norm(encoder)(hidden[-clip_skip]), None


def _emphasis(z, weights, counts):
    """A1111's "Original" emphasis: weight every token vector, then restore the mean the batch had before.

    z: (n, 77, C) for n distinct texts; counts: how often each text appears in the schedule (A1111 encodes every
    schedule entry, duplicates too, in one batch, so each text weighs in the mean as often as it appears).
    """
    import torch

    z32 = z.float()
    share = torch.tensor(counts, dtype=torch.float32, device=z32.device) / sum(counts)
    before = (z32.mean(dim=(1, 2)) * share).sum()
    z32 = z32 * weights.to(z32.device, torch.float32).unsqueeze(-1)
    after = (z32.mean(dim=(1, 2)) * share).sum()
    if not torch.isfinite(before / after):  # a mean of exactly 0 cannot be restored (untrained layer norms)
        return z32.to(z.dtype)
    return (z32 * (before / after)).to(z.dtype)


def _encode_variants(encoder, tokenizer, texts: list[str], counts: list[int], family: str, clip_skip: int,
                     second: bool, device):
    """One encoder over the distinct texts of a prompt's schedule, encoded together as A1111 does."""
    import torch

    info = TokenizerInfo.of(tokenizer)
    chunked = [chunk_text(text, tokenizer, info)[0] for text in texts]
    empty = chunk_tokens([("", 1.0)], [[]], info)[0][0]
    zs, pooled = [], None
    for i in range(max(len(c) for c in chunked)):
        batch = [c[i] if i < len(c) else empty for c in chunked]
        ids = torch.tensor([c.ids for c in batch], device=device)
        weights = torch.tensor([c.weights for c in batch])
        z, pool = _encode_chunk(encoder, ids, family, clip_skip, second)
        if i == 0:
            pooled = pool
        zs.append(_emphasis(z, weights, counts))
    return torch.cat(zs, dim=1), pooled


def encode_prompt(pipe, family: str, prompt: str, steps: int, clip_skip: int = 1, *, zero: bool = False) -> Encoded:
    """Encode a prompt (A1111 syntax, LoRA tags already removed) for `steps` sampler calls.

    Returns one (1, 77·k, C) tensor per schedule entry (C = 768 SD1, 1024 SD2, 2048 SDXL), in the pipeline's
    dtype on its execution device, and SDXL's pooled (1, 1280). `zero` gives A1111's all-zero SDXL negative.
    Raises InputError for a weight that is not a number or a clip skip deeper than the encoder.
    """
    import torch

    schedule = prompt_schedule(prompt, steps)
    texts = list(dict.fromkeys(text for _, text in schedule))  # alternation repeats texts: encode each once
    counts = [sum(1 for _, t in schedule if t == text) for text in texts]
    device = getattr(pipe, "_execution_device", None) or pipe.device
    dtype = pipe.text_encoder.dtype if getattr(pipe, "text_encoder", None) is not None else pipe.unet.dtype
    with torch.inference_mode():
        z, pooled = _encode_variants(pipe.text_encoder, pipe.tokenizer, texts, counts, family, clip_skip, False,
                                     device)
        if family == "sdxl":
            z2, pooled = _encode_variants(pipe.text_encoder_2, pipe.tokenizer_2, texts, counts, family, clip_skip,
                                          True, device)
            z = torch.cat([z, z2.to(z.dtype)], dim=-1)
        if zero:
            z = torch.zeros_like(z)
            pooled = torch.zeros_like(pooled) if pooled is not None else None
    z = z.to(device=device, dtype=dtype)
    row = [texts.index(text) for _, text in schedule]
    embeds = [z[i: i + 1] for i in row]
    pools = [pooled[i: i + 1].to(device=device, dtype=dtype) if pooled is not None else None for i in row]
    return Encoded(schedule, embeds, pools)


def match_lengths(positive: Encoded, negative: Encoded, empty) -> None:
    """Make every tensor of both prompts the same length, in place (see the module notes).

    `empty()` returns the encoded empty prompt (1, 77, C), used only where repeating would exceed MAX_REPEAT.
    """
    import torch

    lengths = {t.shape[1] for t in positive.embeds + negative.embeds}
    if len(lengths) == 1:
        return
    target = math.lcm(*lengths)
    if target > MAX_REPEAT * max(lengths):
        target = max(lengths)
        pad = empty()

        def fit(t):
            return torch.cat([t] + [pad.to(t.dtype)] * ((target - t.shape[1]) // pad.shape[1]), dim=1)
    else:
        def fit(t):
            return t.repeat(1, target // t.shape[1], 1)
    positive.embeds = [fit(t) for t in positive.embeds]
    negative.embeds = [fit(t) for t in negative.embeds]


class ScheduleSwitch:
    """Swaps the conditioning between sampler steps (prompt editing, alternation) in `callback_on_step_end`.

    diffusers keeps the classifier-free-guidance batch [negative × B; positive × B] in `prompt_embeds`
    (and SDXL's pooled pair in `add_text_embeds`); the tensors for call s+1 are put there after step s.
    """

    def __init__(self, positive: Encoded, negative: Encoded, batch_size: int, sdxl: bool):
        self.positive, self.negative, self.batch, self.sdxl = positive, negative, batch_size, sdxl
        self.current = (0, 0)

    @property
    def active(self) -> bool:
        return len(self.positive.schedule) > 1 or len(self.negative.schedule) > 1

    @property
    def tensor_inputs(self) -> list[str]:
        if not self.active:
            return []
        return ["prompt_embeds", "add_text_embeds"] if self.sdxl else ["prompt_embeds"]

    def __call__(self, pipe, step: int, tensors: dict) -> dict:
        import torch

        wanted = (self.positive.at(step + 1), self.negative.at(step + 1))
        if not self.active or wanted == self.current or "prompt_embeds" not in tensors:
            return tensors
        self.current = wanted
        cfg = tensors["prompt_embeds"].shape[0] == 2 * self.batch

        def pair(pos, neg):
            pos = pos.expand(self.batch, *pos.shape[1:])
            return torch.cat([neg.expand(self.batch, *neg.shape[1:]), pos]) if cfg else pos

        old = tensors["prompt_embeds"]
        tensors["prompt_embeds"] = pair(self.positive.embeds[wanted[0]], self.negative.embeds[wanted[1]]).to(old)
        if self.sdxl and "add_text_embeds" in tensors:
            old = tensors["add_text_embeds"]
            tensors["add_text_embeds"] = pair(self.positive.pooled[wanted[0]], self.negative.pooled[wanted[1]]).to(old)
        return tensors
