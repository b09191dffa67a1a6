"""ComfyUI scaled fp8 transformer files, rescaled while loading (colab_sd/generation/families/fp8.py).

A tiny Z-Image transformer in its released (original, fused-qkv) layout is quantized the way ComfyUI does it
(comfy/quant_ops.py: scale = absmax / 448, weight / scale cast to float8_e4m3fn) and written as the two layouts
ComfyUI reads: `scaled_fp8` + `<layer>.scale_weight` (+ `scale_input`), and `<layer>.comfy_quant` +
`<layer>.weight_scale` (+ `input_scale`). The same weights dequantized in fp32 (q × scale) and saved as a plain fp32
file are the reference: diffusers' own converter reads that one, so the comparison does not trust colab_sd's code.
"""
from __future__ import annotations

import json
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.events import Info  # noqa: E402
from colab_sd.generation import families  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.generation.families import fp8  # noqa: E402
from colab_sd.generation.memory_plan import GB, Machine, Part, decide  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SMALL = dict(steps=2, width=64, height=64, seed=7, prompt="a photo of a cat")
E4M3_MAX = 448.0


def quantize(sd: dict, layout: str = "scaled_fp8", per_row: bool = False) -> tuple[dict, dict]:
    """(the file's tensors, their dequantized fp32 values) for a ComfyUI fp8 file of `sd`: every 2-D `.weight`
    divided by its scale (absmax / 448 per tensor, or per output row) and cast to float8_e4m3fn, the scale beside
    it; everything else bf16, as ComfyUI's files keep norms and biases."""
    tensors, reference = {}, {}
    for key, value in sd.items():
        value = value.detach().float()
        if value.dim() == 2 and key.endswith(".weight"):
            amax = value.abs().amax(dim=1, keepdim=True) if per_row else value.abs().amax()
            scale = (amax / E4M3_MAX).clamp(min=1e-12)
            q = (value / scale).to(torch.float8_e4m3fn)
            layer = key[: -len(".weight")]
            tensors[key] = q
            if layout == "scaled_fp8":
                tensors[f"{layer}.scale_weight"] = scale
                tensors[f"{layer}.scale_input"] = torch.tensor(1.0)
            else:
                tensors[f"{layer}.weight_scale"] = scale
                tensors[f"{layer}.input_scale"] = torch.tensor(0.5)  # meaningless to a dequantized model: dropped
                tensors[f"{layer}.comfy_quant"] = torch.tensor(list(json.dumps(
                    {"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
            reference[key] = q.float() * scale
        else:
            tensors[key] = value.to(torch.bfloat16)
            reference[key] = tensors[key].float()
    if layout == "scaled_fp8":
        tensors["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return tensors, reference


@pytest.fixture(scope="module")
def zimage(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pipe = tiny_families.build_zimage()
    paths = tiny_families.save_zimage(pipe, root)
    original = tiny_families.zimage_to_original(pipe.transformer.state_dict())
    ckpt = root / "checkpoint"
    tensors, reference = quantize(original)
    save_file(tensors, str(ckpt / "tiny-zimage-fp8-scaled.safetensors"))
    mixed, mixed_ref = quantize(original, layout="comfy_quant", per_row=True)
    save_file(mixed, str(ckpt / "tiny-zimage-fp8-mixed.safetensors"))
    save_file({k: v.contiguous() for k, v in reference.items()}, str(ckpt / "tiny-zimage-dequantized.safetensors"))
    # what a loader that ignores the scales sees: the same fp8 numbers, no scales
    plain = {k: v for k, v in tensors.items() if not fp8.is_scale_key(k) and not k.endswith(".scale_input")}
    save_file(plain, str(ckpt / "tiny-zimage-fp8-unscaled.safetensors"))
    yield root, paths, {"original": original, "reference": reference, "mixed": mixed_ref}
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(zimage, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, zimage[0], tmp_path / "outputs")


def _load(root, name, dtype=torch.float32):
    from colab_sd.generation.families.load import load_transformer

    fam = families.lookup("zimage")
    return load_transformer(root / "checkpoint" / f"{name}.safetensors", fam, dtype, root / "_configs" / "zimage")


def _max_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


@pytest.mark.parametrize("name,expected", [("tiny-zimage-fp8-scaled", "scaled fp8"),
                                           ("tiny-zimage-fp8-mixed", "ComfyUI float8_e4m3fn layers")])
def test_rescaled_weights_equal_the_dequantized_reference(zimage, name, expected):
    """(a) loaded with its scales, every weight is q × scale: diffusers' own load of the fp32 dequantized file."""
    root = zimage[0]
    assert fp8.scheme(root / "checkpoint" / f"{name}.safetensors") == expected
    reference = _load(root, "tiny-zimage-dequantized")
    if name.endswith("mixed"):  # per-row scales: its own dequantized values
        path = root / "checkpoint" / "mixed-dequantized.safetensors"
        save_file({k: v.contiguous() for k, v in zimage[2]["mixed"].items()}, str(path))
        reference = _load(root, "mixed-dequantized")
    loaded = _load(root, name)
    assert _max_diff(loaded, reference) == 0.0  # fp32 on the CPU: exactly the same numbers
    # and within fp8's rounding of the weights it was made from (e4m3: 3 mantissa bits, ≤ 1/16 of |w|max)
    fresh = _load(root, "tiny-zimage")  # the bf16 single file of the same transformer
    worst = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-6))
                for (k, a), b in zip(loaded.state_dict().items(), fresh.state_dict().values()) if a.dim() == 2)
    assert worst <= 1 / 16 + 1e-2, worst


def test_without_the_scales_the_weights_are_clearly_wrong(zimage):
    """(b) what diffusers does with the same file on its own (scales dropped as unexpected keys), and the file
    with the scales removed: the weights are hundreds of times too large, so a dropped scale cannot pass (a)."""
    import diffusers

    root = zimage[0]
    reference = _load(root, "tiny-zimage-dequantized")
    dropped = diffusers.ZImageTransformer2DModel.from_single_file(
        str(root / "checkpoint" / "tiny-zimage-fp8-scaled.safetensors"), config=str(root / "_configs" / "zimage"),
        subfolder="transformer", local_files_only=True, torch_dtype=torch.float32)
    unscaled = _load(root, "tiny-zimage-fp8-unscaled")
    for model in (dropped, unscaled):
        assert _max_diff(model, reference) > 50.0


def test_scaled_file_generates_the_dequantized_image(zimage):
    """(c) through the user's path: the scaled file makes the image the fp32 dequantized file makes."""
    events = []
    scaled = colab_sd.generate(model="tiny-zimage-fp8-scaled", on_event=events.append, **SMALL)
    plain = colab_sd.generate(model="tiny-zimage-dequantized", **SMALL)
    a = np.asarray(scaled.images[0], dtype=np.float32)
    b = np.asarray(plain.images[0], dtype=np.float32)
    assert a.shape == (64, 64, 3) and a.std() > 1.0  # an image, not a flat field
    assert np.abs(a - b).max() <= 1.0
    messages = [e.message for e in events if isinstance(e, Info)]
    assert any(m.startswith("memory plan: Z-Image Turbo") and "scaled fp8" in m for m in messages), messages
    assert scaled.paths and scaled.paths[0].is_file()


def test_the_model_says_it_is_rescaled(zimage):
    from colab_sd import probe
    from colab_sd.generation.models import resolve_model

    path = zimage[0] / "checkpoint" / "tiny-zimage-fp8-scaled.safetensors"
    assert any("scaled fp8" in str(r) for r in probe.inspect(path).reasons)  # what the Library shows
    ref = resolve_model("tiny-zimage-fp8-scaled")
    assert ref.family == "zimage"
    assert any("scaled fp8: each weight × its scale while loading" in r for r in ref.reasons), ref.reasons


def test_plan_counts_a_scaled_file_as_rescaled_in_ram(zimage):
    """(d) the library file is a "fp8-scaled" part; its load copy is its size in the compute dtype wherever it
    goes (a plain fp8 file going straight to the GPU passes one tensor at a time), and the plan line says it."""
    from colab_sd.generation.families.run import parts_for
    from colab_sd.generation.models import resolve_model

    root = zimage[0]
    fam = families.lookup("zimage")
    ref = resolve_model("tiny-zimage-fp8-scaled")
    den = parts_for(ref, fam, root, root / "_configs" / "zimage")[0]
    assert den.stored == "fp8-scaled"
    plain = parts_for(resolve_model("tiny-zimage-fp8-unscaled"), fam, root, root / "_configs" / "zimage")[0]
    assert plain.stored == "fp8"

    klein = families.lookup("flux2", "klein-4b")
    others = [Part(c.role, c.params, c.size, "bf16") for c in klein.components]
    small_ram = Machine("T4, 8 GB RAM free", int(15 * GB), int(8 * GB), bitsandbytes=True)
    as_plain = decide(klein, [Part("transformer", klein.params, int(3.9 * GB), "fp8")] + others, small_ram)
    as_scaled = decide(klein, [Part("transformer", klein.params, int(3.9 * GB), "fp8-scaled")] + others, small_ram)
    assert as_plain.fits and as_plain.placement == "gpu" and as_plain.ram_need < 1 * GB
    assert not as_scaled.fits and as_scaled.ram_need >= klein.params * GB * 2
    assert "scaled fp8" in as_scaled.line and "GGUF" in as_scaled.suggestion  # the level that would fit

    zi = [Part("transformer", fam.params, int(6.2 * GB), "fp8-scaled")] + \
        [Part(c.role, c.params, c.size, "bf16") for c in fam.components]
    on_t4 = decide(fam, zi, Machine.t4())
    assert not on_t4.fits and "Q8_0 GGUF" in on_t4.suggestion and "scaled fp8" in on_t4.line
    big = decide(fam, zi, Machine("24 GB bf16 GPU", int(23.5 * GB), int(28 * GB), bf16=True, bitsandbytes=True))
    assert big.fits and big.line.startswith("Z-Image Turbo scaled fp8: all on GPU, bf16")


def test_unknown_quant_format_is_refused_in_one_line(zimage, tmp_path):
    """(e) a comfy_quant layer colab_sd cannot dequantize (nvfp4: packed fp4 with swizzled block scales), and a
    scale whose shape fits no rule, are refused before loading, naming the bf16 / GGUF alternative."""
    from colab_sd.generation.models import resolve_model

    original = zimage[2]["original"]
    tensors, _ = quantize(original, layout="comfy_quant")
    layer = next(k for k in tensors if k.endswith(".comfy_quant"))
    tensors[layer] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    path = tmp_path / "z-nvfp4.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(InputError) as err:
        resolve_model(str(path))
    text = str(err.value)
    assert "nvfp4" in text and "GGUF" in text and "bf16" in text and "\n" not in text

    tensors, _ = quantize(original)
    weight = next(k for k in tensors if k.endswith(".scale_weight"))
    tensors[weight] = torch.ones(3, 5)
    path = tmp_path / "z-odd-scale.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="does not fit its weight.*GGUF"):
        resolve_model(str(path))


@pytest.mark.parametrize("scale_shape", [(), (1,), (6, 1), (6,), (6, 4), (6, 4, 1)])
def test_dequantize_applies_each_scale_shape_as_comfyui_does(scale_shape):
    """One scale per tensor, per output row, or per block of the input dimension (here 4 blocks of 2)."""
    torch.manual_seed(0)
    q = (torch.randn(6, 8) * 100).to(torch.float8_e4m3fn)
    scale = torch.rand(scale_shape) + 0.5
    if len(scale_shape) >= 2 and scale_shape[1] == 4:
        expected = (q.float().view(6, 4, 2) * scale.reshape(6, 4, 1)).view(6, 8)
    elif scale_shape == (6,):
        expected = q.float() * scale.reshape(6, 1)
    else:
        expected = q.float() * scale
    out = fp8.dequantize(q, scale, torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    half = fp8.dequantize(q, scale, torch.float16)  # in the compute dtype directly: no fp32 intermediate kept
    assert half.dtype == torch.float16 and torch.allclose(half.float(), expected, rtol=2e-3)


def test_a_bundles_scaled_text_encoder_does_not_make_its_denoiser_scaled(tmp_path):
    """ComfyUI bundles (denoiser under `model.diffusion_model.`, encoders under `text_encoders.`): only the
    denoiser's keys decide, and only they are read (families.bundle takes a scaled encoder from the library)."""
    q = torch.ones(4, 4).to(torch.float8_e4m3fn)
    encoder = {"text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight": q,
               "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.scale_weight": torch.tensor(2.0),
               "vae.decoder.conv_in.weight": torch.ones(4, 4, 3, 3)}
    save_file(dict(encoder, **{"model.diffusion_model.layers.0.attention.qkv.weight": torch.ones(12, 4)}),
              str(tmp_path / "plain-denoiser.safetensors"))
    assert fp8.scheme(tmp_path / "plain-denoiser.safetensors") is None
    save_file(dict(encoder, **{"model.diffusion_model.layers.0.attention.qkv.weight": q.clone(),
                               "model.diffusion_model.layers.0.attention.qkv.scale_weight": torch.tensor(0.5),
                               "model.diffusion_model.scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}),
              str(tmp_path / "scaled-denoiser.safetensors"))
    assert fp8.scheme(tmp_path / "scaled-denoiser.safetensors") == "scaled fp8"
    sd = fp8.rescaled(tmp_path / "scaled-denoiser.safetensors", torch.float16)
    assert list(sd) == ["model.diffusion_model.layers.0.attention.qkv.weight"]
    assert sd["model.diffusion_model.layers.0.attention.qkv.weight"].dtype == torch.float16
    assert torch.equal(sd["model.diffusion_model.layers.0.attention.qkv.weight"], torch.full((4, 4), 0.5).half())


def test_scaled_text_encoder_is_rescaled_too(zimage, tmp_path, monkeypatch):
    """A ComfyUI scaled fp8 text encoder in text_encoder/ (as `t5xxl_fp8_e4m3fn_scaled.safetensors` is for Flux;
    here the tiny Qwen3 of Z-Image, in ComfyUI's `model.` layout): loaded with its scales, the whole model from
    scaled files makes the image its fp32 dequantized files make."""
    import shutil

    from colab_sd.generation import components
    from colab_sd.generation.families.flow import QWEN3_4B

    root, paths, _ = zimage
    encoder = tiny_families.tiny_qwen3(2)  # build_zimage's encoder seed
    tensors, reference = quantize(tiny_families.qwen_to_comfy(encoder.state_dict()))
    libs = {}
    for name, weights, model in (("scaled", tensors, "tiny-zimage-fp8-scaled"),
                                 ("dequantized", reference, "tiny-zimage-dequantized")):
        lib = libs[name] = tmp_path / name
        for folder in ("checkpoint", "text_encoder", "vae"):
            (lib / folder).mkdir(parents=True)
        shutil.copyfile(root / "checkpoint" / f"{model}.safetensors", lib / "checkpoint" / "z.safetensors")
        shutil.copyfile(paths["vae"], lib / "vae" / paths["vae"].name)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(lib / "text_encoder" / "qwen3.safetensors"))
    config = root / "_configs" / "zimage"
    assert components.weights_of(libs["scaled"] / "text_encoder" / "qwen3.safetensors")[1] == "fp8-scaled"
    loaded = components.load(QWEN3_4B, libs["scaled"] / "text_encoder" / "qwen3.safetensors", config, torch.float32)
    plain = components.load(QWEN3_4B, libs["dequantized"] / "text_encoder" / "qwen3.safetensors", config,
                            torch.float32)
    assert _max_diff(loaded, plain) == 0.0
    images = {}
    for name, lib in libs.items():
        monkeypatch.setenv("COLAB_SD_HOME", str(lib))
        images[name] = np.asarray(colab_sd.generate(model="z", **SMALL).images[0], dtype=np.float32)
    assert images["scaled"].std() > 1.0 and np.abs(images["scaled"] - images["dequantized"]).max() <= 1.0


def test_plain_fp8_kept_fp8_generates_through_the_users_path(zimage, monkeypatch):
    """A plan with `storage="fp8"` (what the plan picks on a T4 for a plain fp8 Z-Image, see test_memory_plan):
    the transformer's Linear weights stay fp8 and are upcast per layer by diffusers' layerwise casting; here on the
    CPU with fp32 compute (torch upcasts fp8 on the CPU too). The image is the one the same file makes upcast on
    load, within what storing the bf16 biases in fp8 changes."""
    import dataclasses

    from colab_sd.generation import memory_plan

    root = zimage[0]
    plain = {k: (v.to(torch.float8_e4m3fn) if v.dim() == 2 and k.endswith(".weight") else v.to(torch.bfloat16))
             for k, v in zimage[2]["original"].items()}
    save_file({k: v.contiguous() for k, v in plain.items()}, str(root / "checkpoint" / "tiny-zimage-fp8.safetensors"))
    upcast = np.asarray(colab_sd.generate(model="tiny-zimage-fp8", **SMALL).images[0], dtype=np.float32)
    assert {p.dtype for p in CACHE.entry.pipe.transformer.parameters()} == {torch.float32}
    CACHE.release()
    decide = memory_plan.decide
    monkeypatch.setattr(memory_plan, "decide", lambda *a, **kw: dataclasses.replace(decide(*a, **kw), storage="fp8"))
    kept = np.asarray(colab_sd.generate(model="tiny-zimage-fp8", **SMALL).images[0], dtype=np.float32)
    transformer = CACHE.entry.pipe.transformer
    linear = transformer.layers[0].attention.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn and linear._diffusers_hook.get_hook("layerwise_casting")
    assert transformer.t_embedder.mlp[0].weight.dtype == torch.float32  # a precision-sensitive layer: not kept fp8
    stored = sum(p.numel() for p in transformer.parameters() if p.dtype == torch.float8_e4m3fn)
    assert stored >= 0.15 * sum(p.numel() for p in transformer.parameters())
    assert kept.std() > 1.0 and np.abs(kept - upcast).mean() < 1.0  # measured: 0.24 (max 2 of 255)

    # a LoRA (PEFT layout) on the fp8-kept transformer: applied over the per-layer upcast, and the weights stay fp8
    g = torch.Generator().manual_seed(3)
    lora = {}
    for name in ("layers.0.attention.to_q", "layers.0.attention.to_v", "layers.1.feed_forward.w1"):
        module = transformer.get_submodule(name)
        lora[f"transformer.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=g) * 0.5
        lora[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.5
    (root / "lora").mkdir(exist_ok=True)
    save_file(lora, str(root / "lora" / "zimage-fp8-kept-test.safetensors"))
    styled = colab_sd.generate(model="tiny-zimage-fp8", **dict(SMALL, prompt=SMALL["prompt"] +
                                                               " <lora:zimage-fp8-kept-test:1>"))
    to_q = CACHE.entry.pipe.transformer.layers[0].attention.to_q
    assert to_q.base_layer.weight.dtype == torch.float8_e4m3fn \
        and {a.weight.dtype for a in to_q.lora_A.values()} == {torch.float32}
    assert np.abs(np.asarray(styled.images[0], dtype=np.float32) - kept).mean() > 2.0
    CACHE.release()
