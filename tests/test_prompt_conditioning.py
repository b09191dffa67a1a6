"""Weighted pieces → conditioning as A1111 builds it: chunk conformance cases on the real CLIP tokenizer colab_sd
ships (parity reference §2, §8.3, §8.4, §8.7, §8.8), and the tensors on tiny real text encoders and UNets."""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

import tiny_models  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.generation import configs  # noqa: E402
from colab_sd.generation.conditioning import (ScheduleSwitch, TokenizerInfo, chunk_text, encode_prompt,  # noqa: E402
                                              match_lengths, token_count)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The real CLIP-L tokenizer (SD1; SDXL's first) and OpenCLIP's (pad "!": SD2, SDXL's second), from the bundle."""
    from transformers import CLIPTokenizer

    folder = configs.config_folder("sdxl", tmp_path_factory.mktemp("configs"))
    return CLIPTokenizer.from_pretrained(folder / "tokenizer"), CLIPTokenizer.from_pretrained(folder / "tokenizer_2")


@pytest.fixture(scope="module")
def sd1():
    return tiny_models.build_sd1()


@pytest.fixture(scope="module")
def sdxl():
    return tiny_models.build_sdxl()


def text_tokens(chunks, info) -> list[int]:
    return [sum(1 for t in c.ids[1:-1] if t not in (info.eos, info.pad)) for c in chunks]


# ---------------------------------------------------------------------------------------------- §8.3 / §8.4


@pytest.mark.parametrize("prompt,chunks,count", [
    ("", 1, 0), ("a", 1, 1), ("cat " * 75, 1, 75), ("cat " * 76, 2, 76), ("cat " * 150, 2, 150),
    ("cat " * 151, 3, 151), ("a BREAK b", 2, 76), ("a BREAK", 1, 75), ("BREAK a", 2, 76), ("a BREAK BREAK b", 3, 151),
    ("(a BREAK b:1.2)", 1, 3),  # inside brackets BREAK is a word with weight -1.2, not a chunk break
])
def test_chunk_counts_and_counted_tokens_match_a1111(clip, prompt, chunks, count):
    made, counted = chunk_text(prompt, clip[0])
    assert (len(made), counted) == (chunks, count)
    assert token_count(prompt, clip[0]) == count


@pytest.mark.parametrize("prompt,per_chunk,count", [
    ("cat " * 70 + ", " + "dog " * 10, [71, 10], 85),
    ("cat " * 55 + ", " + "dog " * 30, [56, 30], 105),
    ("cat " * 54 + ", " + "dog " * 30, [75, 10], 85),  # the comma is too far back: no backtracking
    ("cat " * 74 + ", dog", [75, 1], 76),
])
def test_comma_backtracking_moves_what_follows_the_last_comma(clip, prompt, per_chunk, count):
    info = TokenizerInfo.of(clip[0])
    made, counted = chunk_text(prompt, clip[0], info)
    assert text_tokens(made, info) == per_chunk and counted == count


def test_every_chunk_is_77_ids_with_start_end_and_each_tokenizers_padding(clip):
    first, second = clip
    for tokenizer, pad in ((first, 49407), (second, 0)):
        info = TokenizerInfo.of(tokenizer)
        made, _ = chunk_text("a cat BREAK dog", tokenizer, info)
        assert [len(c.ids) for c in made] == [77, 77] and all(c.ids[0] == 49406 for c in made)
        assert made[0].ids[:4] == [49406, 320, 2368, 49407] and set(made[0].ids[4:]) == {pad}
        assert made[1].ids[:3] == [49406, 1929, 49407]
    weights = chunk_text("a (cat:1.5)", first)[0][0].weights
    assert weights[:4] == [1.0, 1.0, 1.5, 1.0] and len(weights) == 77


def test_pieces_are_tokenized_apart_so_bpe_never_merges_across_a_weight(clip):
    info = TokenizerInfo.of(clip[0])
    joined = chunk_text("reddog", clip[0], info)[0][0].ids
    split = chunk_text("(red)dog", clip[0], info)[0][0].ids
    assert split[1:3] == clip[0]("red dog", add_special_tokens=False).input_ids and joined[1:3] != split[1:3]


# ---------------------------------------------------------------------------------------------- tensors


def test_a_plain_prompt_encodes_exactly_as_diffusers_does(sd1, sdxl):
    """Weights of 1 in one chunk: A1111's conditioning is diffusers' own (SD1 last layer; SDXL penultimate of both
    encoders, OpenCLIP pooled)."""
    with torch.no_grad():
        ours = encode_prompt(sd1, "sd1", "a photo of a cat", 2)
        theirs, _ = sd1.encode_prompt("a photo of a cat", "cpu", 1, False)
        assert torch.equal(ours.embeds[0], theirs)
        ours = encode_prompt(sdxl, "sdxl", "a photo of a cat", 2)
        embeds, _, pooled, _ = sdxl.encode_prompt("a photo of a cat", device="cpu", do_classifier_free_guidance=False)
    assert ours.embeds[0].shape == (1, 77, 2048) and torch.allclose(ours.embeds[0], embeds, atol=1e-6)
    assert torch.allclose(ours.pooled[0], pooled, atol=1e-6)


def test_weight_one_is_no_weight_and_emphasis_keeps_the_mean(sd1):
    plain = encode_prompt(sd1, "sd1", "a cat", 2).embeds[0]
    assert torch.equal(encode_prompt(sd1, "sd1", "a (cat:1.0)", 2).embeds[0], plain)
    weighted = encode_prompt(sd1, "sd1", "a (cat:1.5)", 2).embeds[0]
    assert not torch.equal(weighted, plain)
    assert torch.isclose(weighted.mean(), plain.mean(), rtol=1e-4)  # "Original": the mean is restored


def test_long_prompts_are_concatenated_chunks_and_later_words_count(sd1):
    head = ", ".join(["a red cat"] * 26)
    a = encode_prompt(sd1, "sd1", head + ", blue house", 2).embeds[0]
    b = encode_prompt(sd1, "sd1", head + ", green tree", 2).embeds[0]
    assert a.shape == (1, 154, 768) and torch.equal(a[:, :77], b[:, :77]) and not torch.equal(a[:, 77:], b[:, 77:])


def test_sdxl_pooled_comes_from_the_first_chunk_and_an_empty_negative_is_zeros(sdxl):
    short = encode_prompt(sdxl, "sdxl", "a cat", 2)
    long = encode_prompt(sdxl, "sdxl", "a cat BREAK a dog", 2)
    assert long.embeds[0].shape == (1, 154, 2048) and torch.equal(long.pooled[0], short.pooled[0])
    zero = encode_prompt(sdxl, "sdxl", "", 2, zero=True)
    assert zero.embeds[0].shape == (1, 77, 2048) and not zero.embeds[0].any() and not zero.pooled[0].any()


def test_clip_skip_the_a1111_way(sd1, sdxl):
    """SD1 clip skip 2 = the penultimate layer through the final norm (diffusers' clip_skip=1); SDXL 1 and 2 are both
    the penultimate layer (A1111), 3 goes one deeper (Forge)."""
    with torch.no_grad():
        ids = torch.tensor([chunk_text("a cat", sd1.tokenizer)[0][0].ids])
        out = sd1.text_encoder(ids, output_hidden_states=True)
        norm = sd1.text_encoder._modules.get("text_model", sd1.text_encoder).final_layer_norm
        expected = norm(out.hidden_states[-2])
    assert torch.allclose(encode_prompt(sd1, "sd1", "a cat", 2, clip_skip=2).embeds[0], expected, atol=1e-6)
    one, two, three = (encode_prompt(sdxl, "sdxl", "a cat", 2, clip_skip=n).embeds[0] for n in (1, 2, 3))
    assert torch.equal(one, two) and not torch.equal(two, three)
    with pytest.raises(InputError, match="clip skip 5 is more than this model's 2 text-encoder layers"):
        encode_prompt(sd1, "sd1", "a cat", 2, clip_skip=5)


def test_embedding_vectors_stay_whole_and_work_inside_weights(sd1, tmp_path):
    """A 3-vector embedding at tokens 74-76 moves whole to the next chunk; weighted, its vectors get the weight."""
    import copy

    pipe = copy.copy(sd1)
    pipe.tokenizer = copy.deepcopy(sd1.tokenizer)
    pipe.text_encoder = copy.deepcopy(sd1.text_encoder)
    vectors = torch.randn(3, 768, generator=torch.Generator().manual_seed(1))
    pipe.load_textual_inversion(vectors, token="tinyemb", tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)
    info = TokenizerInfo.of(pipe.tokenizer)
    run = pipe.tokenizer.convert_tokens_to_ids(["tinyemb", "tinyemb_1", "tinyemb_2"])
    assert info.embeddings == {run[0]: run}
    chunks, count = chunk_text("cat " * 73 + "tinyemb", pipe.tokenizer, info)
    assert text_tokens(chunks, info) == [73, 3] and chunks[1].ids[1:4] == run and count == 78
    weighted = chunk_text("a (tinyemb:1.3)", pipe.tokenizer, info)[0][0]
    assert weighted.ids[2:5] == run and weighted.weights[2:5] == [1.3] * 3
    assert not torch.equal(encode_prompt(pipe, "sd1", "a tinyemb", 2).embeds[0],
                           encode_prompt(sd1, "sd1", "a tinyemb", 2).embeds[0])


# ---------------------------------------------------------------------------------------------- §8.7 lengths


def test_different_lengths_are_repeated_to_their_lcm_which_cross_attention_cannot_tell(sd1):
    positive = encode_prompt(sd1, "sd1", "a cat BREAK a dog", 2)  # 154
    negative = encode_prompt(sd1, "sd1", "blurry", 2)  # 77
    original = negative.embeds[0]
    match_lengths(positive, negative, lambda: None)
    assert positive.embeds[0].shape[1] == negative.embeds[0].shape[1] == 154
    assert torch.equal(negative.embeds[0], original.repeat(1, 2, 1))
    three = encode_prompt(sd1, "sd1", "a BREAK b BREAK c", 2)
    two = encode_prompt(sd1, "sd1", "a BREAK b", 2)
    match_lengths(three, two, lambda: None)
    assert three.embeds[0].shape[1] == two.embeds[0].shape[1] == 462
    with torch.no_grad():
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        once = sd1.unet(latents, 10, encoder_hidden_states=original).sample
        twice = sd1.unet(latents, 10, encoder_hidden_states=original.repeat(1, 2, 1)).sample
    assert torch.allclose(once, twice, atol=1e-5)


def test_lengths_far_apart_are_padded_with_empty_chunks(sd1):
    long = encode_prompt(sd1, "sd1", " BREAK ".join("abcdefg"), 2)  # 7 chunks
    short = encode_prompt(sd1, "sd1", " BREAK ".join("abcde"), 2)  # 5 chunks: the LCM, 35, is 5x the longer
    empty = encode_prompt(sd1, "sd1", "", 1).embeds[0]
    before = short.embeds[0]
    match_lengths(long, short, lambda: empty)
    assert short.embeds[0].shape[1] == long.embeds[0].shape[1] == 7 * 77
    assert torch.equal(short.embeds[0][:, :385], before) and torch.equal(short.embeds[0][:, 385:462], empty)


# ---------------------------------------------------------------------------------------------- schedules


def test_the_switch_puts_the_next_steps_conditioning_in_the_cfg_batch(sd1):
    positive = encode_prompt(sd1, "sd1", "a [cat:dog:1] x", 4)
    negative = encode_prompt(sd1, "sd1", "blurry", 4)
    assert [text for _, text in positive.schedule] == ["a cat x", "a dog x"]
    switch = ScheduleSwitch(positive, negative, batch_size=2, sdxl=False)
    assert switch.active and switch.tensor_inputs == ["prompt_embeds"]
    start = torch.cat([negative.embeds[0].expand(2, -1, -1), positive.embeds[0].expand(2, -1, -1)])
    tensors = switch(sd1, 0, {"prompt_embeds": start.clone()})  # after call 0: call 1 still uses "cat"
    assert torch.equal(tensors["prompt_embeds"], start)
    tensors = switch(sd1, 1, tensors)  # after call 1: call 2 uses "dog"
    assert torch.equal(tensors["prompt_embeds"][2:], positive.embeds[1].expand(2, -1, -1))
    assert torch.equal(tensors["prompt_embeds"][:2], negative.embeds[0].expand(2, -1, -1))


def test_alternation_encodes_each_text_once_with_a1111s_shared_mean(sd1):
    """`[cat|dog]` at 4 steps: entries cat, dog, cat, dog share tensors; the emphasis mean is the batch's, where A1111
    counts each entry (duplicates too), so an unweighted variant stays exactly as encoded alone."""
    alternating = encode_prompt(sd1, "sd1", "a [cat|dog]", 4)
    assert [text for _, text in alternating.schedule] == ["a cat", "a dog", "a cat", "a dog"]
    assert alternating.embeds[0] is not alternating.embeds[1]
    assert torch.equal(alternating.embeds[0], alternating.embeds[2])
    assert torch.equal(alternating.embeds[0], encode_prompt(sd1, "sd1", "a cat", 4).embeds[0])
    weighted = encode_prompt(sd1, "sd1", "a [(cat:1.5)|dog]", 4)
    alone = encode_prompt(sd1, "sd1", "a (cat:1.5)", 4).embeds[0]
    assert not torch.equal(weighted.embeds[0], alone)  # the mean is restored over both texts together, as A1111
