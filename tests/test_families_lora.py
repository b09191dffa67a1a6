"""LoRAs on the transformer families, end to end through `colab_sd.generate` (tags and the `loras=` option) on the
CPU, offline: tiny LoRA files in the layouts people download, written from the tiny models' own module shapes —
Flux kohya (sd-scripts `lora_unet_double_blocks_…` with `.alpha` and a CLIP `lora_te1_` part), Flux
ai-toolkit / diffusers (`transformer.…lora_A`), Flux BFL names under `diffusion_model.`, Chroma kohya and
ai-toolkit, Z-Image diffusers / ai-toolkit (`diffusion_model.`) / kohya-musubi (`lora_unet_…`, split and fused
qkv), Flux.2 Klein kohya / ai-toolkit (`diffusion_model.` BFL names) / diffusers, SD3 diffusers. Each changes the
image, weight 0 gives the base image, two combine; other families' LoRAs are refused before loading, layouts
diffusers would load as nothing are refused, and LoRAs apply over GGUF and scaled-fp8 transformers.

Not tiny: a Flux kohya `single_blocks_N_linear1` layer (diffusers' converter splits it at the hard-coded
3072/12288 widths of the real model, so it cannot be written at tiny sizes; the last test converts a real-width
one); Flux files here target every other layer kind.
"""
from __future__ import annotations

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
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.generation.models import resolve_addon  # noqa: E402
from colab_sd.library import write_sidecar  # noqa: E402
from test_families_fp8 import quantize  # noqa: E402  (ComfyUI's scaled fp8 quantization, as that module tests it)

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("offline")]

MODELS = {"flux": "tiny-flux-dev", "chroma": "tiny-chroma", "zimage": "tiny-zimage", "klein": "tiny-klein",
          "sd3": "tiny-sd3"}
CALL = dict(prompt="a photo of a cat", steps=2, width=64, height=64, seed=5)
SCALE = 0.5  # LoRA factors' spread: big enough that every tiny model's image moves visibly
MOVED = 0.5  # mean |difference| (0-255) that counts as a change; weight 0 and no LoRA are compared exactly

# Flux.1 (BFL / kohya names → the diffusers modules they fuse, in order of their output rows)
FLUX_BFL = {
    "double_blocks.0.img_attn.qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"],
    "double_blocks.0.img_attn.proj": ["transformer_blocks.0.attn.to_out.0"],
    "double_blocks.0.img_mlp.0": ["transformer_blocks.0.ff.net.0.proj"],
    "double_blocks.0.img_mlp.2": ["transformer_blocks.0.ff.net.2"],
    "double_blocks.0.txt_attn.qkv": ["transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.add_k_proj",
                                     "transformer_blocks.0.attn.add_v_proj"],
    "double_blocks.0.txt_mlp.0": ["transformer_blocks.0.ff_context.net.0.proj"],
    "single_blocks.0.linear2": ["single_transformer_blocks.0.proj_out"],
}
FLUX_MOD = {"double_blocks.0.img_mod.lin": ["transformer_blocks.0.norm1.linear"],
            "single_blocks.0.modulation.lin": ["single_transformer_blocks.0.norm.linear"]}
KLEIN_BFL = {
    "double_blocks.0.img_attn.qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"],
    "double_blocks.0.img_attn.proj": ["transformer_blocks.0.attn.to_out.0"],
    "double_blocks.0.img_mlp.0": ["transformer_blocks.0.ff.linear_in"],
    "single_blocks.0.linear1": ["single_transformer_blocks.0.attn.to_qkv_mlp_proj"],
    "single_blocks.0.linear2": ["single_transformer_blocks.0.attn.to_out"],
}
ZIMAGE = ["layers.0.attention.to_q", "layers.0.attention.to_v", "layers.1.feed_forward.w1",
          "noise_refiner.0.attention.to_k", "context_refiner.0.attention.to_out.0", "layers.1.adaLN_modulation.0"]
ZIMAGE_FUSED = {"layers.0.attention.qkv": ["layers.0.attention.to_q", "layers.0.attention.to_k",
                                           "layers.0.attention.to_v"],
                "layers.1.attention.out": ["layers.1.attention.to_out.0"],
                "layers.1.feed_forward.w2": ["layers.1.feed_forward.w2"]}
FLUX_DIFFUSERS = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_k_proj",
                  "transformer_blocks.0.ff.net.0.proj", "single_transformer_blocks.0.proj_mlp",
                  "single_transformer_blocks.0.attn.to_v"]
SD3_DIFFUSERS = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_v_proj",
                 "transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.norm1.linear"]
KLEIN_DIFFUSERS = ["transformer_blocks.0.attn.to_k", "transformer_blocks.0.ff.linear_in",
                   "single_transformer_blocks.0.attn.to_qkv_mlp_proj"]


# ---------------------------------------------------------------------------------------------- LoRA files


def linear_shapes(module) -> dict:
    """{module name: (out features, in features)} of every Linear layer."""
    return {n: (m.out_features, m.in_features) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def _factors(shapes: dict, parts: list, rank: int, g) -> tuple:
    ins, outs = shapes[parts[0]][1], sum(shapes[p][0] for p in parts)
    return torch.randn(rank, ins, generator=g) * SCALE, torch.randn(outs, rank, generator=g) * SCALE


def peft_layout(shapes: dict, modules: list, prefix: str, seed: int, rank: int = 4) -> dict:
    """ai-toolkit / diffusers / PEFT: `<prefix><diffusers module>.lora_A.weight` and `.lora_B.weight`."""
    g, out = torch.Generator().manual_seed(seed), {}
    for name in modules:
        out[f"{prefix}{name}.lora_A.weight"], out[f"{prefix}{name}.lora_B.weight"] = _factors(shapes, [name], rank, g)
    return out


def kohya_layout(shapes: dict, table: dict, seed: int, rank: int = 4, alpha: float = 2.0) -> dict:
    """sd-scripts / musubi: `lora_unet_<original module, dots as underscores>.lora_down/lora_up/alpha`, fused
    layers (qkv) as one down and the stacked up."""
    g, out = torch.Generator().manual_seed(seed), {}
    for original, parts in table.items():
        key = "lora_unet_" + original.replace(".", "_")
        out[f"{key}.lora_down.weight"], out[f"{key}.lora_up.weight"] = _factors(shapes, parts, rank, g)
        out[f"{key}.alpha"] = torch.tensor(alpha)
    return out


def original_peft_layout(shapes: dict, table: dict, seed: int, rank: int = 4) -> dict:
    """Original (BFL) module names under `diffusion_model.` with lora_A / lora_B (ai-toolkit's Flux.2 saves,
    ComfyUI-style Flux saves)."""
    g, out = torch.Generator().manual_seed(seed), {}
    for original, parts in table.items():
        a, b = _factors(shapes, parts, rank, g)
        out[f"diffusion_model.{original}.lora_A.weight"], out[f"diffusion_model.{original}.lora_B.weight"] = a, b
    return out


def clip_kohya(shapes: dict, seed: int) -> dict:
    """A kohya text-encoder part (`lora_te1_text_model_…`: every self-attention projection of one CLIP layer, as
    sd-scripts trains them), as Flux LoRAs trained with the CLIP encoder carry. (transformers 5 has no
    `text_model.` level in CLIPTextModel; diffusers and peft still place these.)"""
    table = {f"text_model.encoder.layers.0.self_attn.{p}": [f"encoder.layers.0.self_attn.{p}"]
             for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
    return {k.replace("lora_unet_", "lora_te1_"): v for k, v in kohya_layout(shapes, table, seed).items()}


def write(root, name: str, tensors: dict) -> str:
    path = root / "lora" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return name


# (family, layout) → (LoRA name, the family the probe must give it)
LAYOUTS = {
    ("flux", "kohya"): ("flux-kohya", "flux"),
    ("flux", "ai-toolkit"): ("flux-aitoolkit", "flux"),
    ("flux", "bfl-diffusion_model"): ("flux-bfl", "flux"),
    ("chroma", "kohya"): ("chroma-kohya", "flux"),  # Flux key names: a Flux LoRA as far as the probe can tell
    ("chroma", "ai-toolkit"): ("chroma-aitoolkit", "flux"),
    ("chroma", "flux-kohya"): ("flux-kohya", "flux"),  # a Flux LoRA with CLIP and modulation parts Chroma lacks
    ("zimage", "diffusers"): ("zimage-diffusers", "zimage"),
    ("zimage", "ai-toolkit"): ("zimage-aitoolkit", "zimage"),
    ("zimage", "kohya"): ("zimage-kohya", "zimage"),
    ("zimage", "kohya-fused-qkv"): ("zimage-kohya-qkv", "zimage"),
    ("klein", "kohya"): ("klein-kohya", "flux2"),
    ("klein", "ai-toolkit"): ("klein-aitoolkit", "flux2"),
    ("klein", "diffusers"): ("klein-diffusers", "flux2"),
    # attention only: layers Flux.1 has too, so the probe assumes Flux.1; the CivitAI sidecar says Klein
    ("klein", "kohya-attention+sidecar"): ("klein-attention", "flux"),
    ("sd3", "diffusers"): ("sd3-diffusers", None),  # SD3 is told by its 1536/2432 width; 32 tells nothing
}


LAYOUT_FAMILY = dict(LAYOUTS.values())


def write_loras(root, pipes: dict) -> None:
    flux = linear_shapes(pipes["flux"].transformer)
    chroma = linear_shapes(pipes["chroma"].transformer)
    klein = linear_shapes(pipes["klein"].transformer)
    zimage = linear_shapes(pipes["zimage"].transformer)
    sd3 = linear_shapes(pipes["sd3"].transformer)
    clip = linear_shapes(pipes["flux"].text_encoder)
    write(root, "flux-kohya", {**kohya_layout(flux, {**FLUX_BFL, **FLUX_MOD}, 1), **clip_kohya(clip, 2)})
    write(root, "flux-kohya-2", kohya_layout(flux, FLUX_BFL, 3))
    write(root, "flux-aitoolkit", peft_layout(flux, FLUX_DIFFUSERS, "transformer.", 4))
    write(root, "flux-bfl", original_peft_layout(flux, {**FLUX_BFL, **FLUX_MOD}, 5))
    write(root, "chroma-kohya", kohya_layout(chroma, FLUX_BFL, 6))
    write(root, "chroma-aitoolkit",
          peft_layout(chroma, [m for m in FLUX_DIFFUSERS if m in chroma], "transformer.", 7))
    write(root, "zimage-diffusers", peft_layout(zimage, ZIMAGE, "transformer.", 8))
    write(root, "zimage-aitoolkit", peft_layout(zimage, ZIMAGE, "diffusion_model.", 9))
    write(root, "zimage-kohya", kohya_layout(zimage, {m: [m] for m in ZIMAGE}, 10))
    write(root, "zimage-kohya-qkv", kohya_layout(zimage, ZIMAGE_FUSED, 11))
    write(root, "klein-kohya", kohya_layout(klein, KLEIN_BFL, 12))
    write(root, "klein-aitoolkit", original_peft_layout(klein, KLEIN_BFL, 13))
    write(root, "klein-diffusers", peft_layout(klein, KLEIN_DIFFUSERS, "transformer.", 14))
    attention = {k: v for k, v in KLEIN_BFL.items() if "attn" in k}
    write(root, "klein-attention", kohya_layout(klein, attention, 19))
    write_sidecar(root / "lora" / "klein-attention.safetensors", {"base_model": "Flux.2 Klein 4B"})
    write(root, "klein-attention-bare", kohya_layout(klein, attention, 19))  # the same file, no sidecar
    write(root, "sd3-diffusers", peft_layout(sd3, SD3_DIFFUSERS, "transformer.", 15))
    # for the refusals: a Chroma-only layer, an SD3 kohya file, real-width SD3, and LoRAs that change nothing
    write(root, "chroma-guidance", peft_layout(chroma, ["distilled_guidance_layer.in_proj",
                                                        "transformer_blocks.0.attn.to_q"], "transformer.", 16))
    g = torch.Generator().manual_seed(17)
    joint = "lora_unet_joint_blocks_0_x_block_attn_qkv"  # sd-scripts' SD3 name for the image stream's fused qkv
    write(root, "sd3-kohya", {f"{joint}.lora_down.weight": torch.randn(4, 32, generator=g),
                              f"{joint}.lora_up.weight": torch.randn(96, 4, generator=g),
                              f"{joint}.alpha": torch.tensor(4.0)})
    to_q = "transformer.transformer_blocks.0.attn.to_q"
    write(root, "sd3-real-width", {f"{to_q}.lora_A.weight": torch.zeros(4, 1536),
                                   f"{to_q}.lora_B.weight": torch.zeros(1536, 4)})
    zero = kohya_layout(flux, FLUX_BFL, 18)
    write(root, "flux-zero", {k: (torch.zeros_like(v) if k.endswith("lora_up.weight") else v)
                              for k, v in zero.items()})
    # keys no part of a Flux pipeline reads (diffusers loads nothing), and keys for modules Flux has not got (peft
    # refuses them)
    write(root, "flux-nomatch", {"unet.no_such_block.0.to_q.lora_A.weight": torch.randn(4, 32, generator=g),
                                 "unet.no_such_block.0.to_q.lora_B.weight": torch.randn(32, 4, generator=g)})
    write(root, "flux-absent", {"transformer.no_such_block.0.to_q.lora_A.weight": torch.randn(4, 32, generator=g),
                                "transformer.no_such_block.0.to_q.lora_B.weight": torch.randn(32, 4, generator=g)})


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("families-lora")
    out = tiny_families.build_library(root)
    out["pipes"]["zimage"] = tiny_families.build_zimage()  # the same seed as the saved Z-Image
    write_loras(root, out["pipes"])
    scaled, _ = quantize(tiny_families.zimage_to_original(out["pipes"]["zimage"].transformer.state_dict()))
    save_file(scaled, str(root / "checkpoint" / "tiny-zimage-fp8-scaled.safetensors"))  # ComfyUI's scaled fp8
    yield root, out
    CACHE.release()


@pytest.fixture(scope="module")
def library(built):
    return built[0]


_BASE: dict = {}


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.float32)


def base_image(family: str, model=None) -> np.ndarray:
    """The image without LoRA (computed once per model)."""
    model = model or MODELS[family]
    if model not in _BASE:
        _BASE[model] = pixels(colab_sd.generate(model=model, **CALL))
    return _BASE[model]


def moved(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


# ---------------------------------------------------------------------------------------------- layouts

# family → its layouts' LoRAs (the first two are combined), in LAYOUTS order
BY_FAMILY = {family: [LAYOUTS[k][0] for k in LAYOUTS if k[0] == family] for family in MODELS}


def with_tag(name: str, weight) -> dict:
    return {**CALL, "prompt": f"{CALL['prompt']} <lora:{name}:{weight}>"}


@pytest.mark.parametrize("family", list(BY_FAMILY))
def test_every_layout_changes_the_image_weight_zero_does_not_and_two_combine(family):
    """One model load per family: each layout's LoRA by tag (the probe's family checked, the infotext written),
    weight 0 = the base image, two LoRAs (option + tag) differ from each alone, then no LoRA = the base again."""
    model, base = MODELS[family], base_image(family)
    alone = {}
    for name in BY_FAMILY[family]:
        assert resolve_addon("lora", name).family == LAYOUT_FAMILY[name], name
        events = []
        result = colab_sd.generate(model=model, **with_tag(name, 0.8), on_event=events.append)
        assert not result.loaded  # the base stays loaded: a LoRA is an adapter on it
        said = [e.message for e in events if isinstance(e, Info) and e.message.startswith(f"LoRA {name} loaded")]
        assert said, name
        if family == "chroma" and name == "flux-kohya":
            assert "text-encoder part (12 CLIP tensors) is left out: Chroma has no CLIP encoder" in said[0]
        alone[name] = pixels(result)
        assert moved(alone[name], base) > MOVED, f"{name} did not change the {family} image"
        params = colab_sd.generation.parse_parameters(result.parameters[0])
        assert params["prompt"] == f"{CALL['prompt']} <lora:{name}:0.8>" and name in params["Lora hashes"]
    first = BY_FAMILY[family][0]
    assert np.array_equal(pixels(colab_sd.generate(model=model, **with_tag(first, 0))), base)
    if len(alone) == 1:  # SD3 has one layout: the same LoRA at another weight must move the image again
        stronger = pixels(colab_sd.generate(model=model, **CALL, loras=[(first, 1.6)]))
        assert moved(stronger, alone[first]) > MOVED
    else:
        second = BY_FAMILY[family][1]
        both = pixels(colab_sd.generate(model=model, **with_tag(second, 0.8), loras=[(first, 0.8)]))
        assert min(moved(both, alone[first]), moved(both, alone[second]), moved(both, base)) > MOVED
    assert np.array_equal(pixels(colab_sd.generate(model=model, **CALL)), base)  # no LoRA: adapters switched off


# ---------------------------------------------------------------------------------------------- refusals


REFUSED = [
    ("tiny-flux-dev", "zimage-kohya", "is for Z-Image"),
    ("tiny-flux-dev", "klein-kohya", "is for Flux.2"),
    ("tiny-flux-dev", "chroma-guidance", "is for Chroma"),
    ("tiny-flux-dev", "sd3-real-width", "is for SD3"),
    ("tiny-klein", "flux-kohya", "is for Flux"),
    ("tiny-klein", "klein-attention-bare", "is for Flux"),  # nothing says Klein: Flux.1 assumed
    ("tiny-sd3", "flux-aitoolkit", "is for Flux"),
    ("tiny-zimage", "klein-diffusers", "is for Flux.2"),
    ("tiny-chroma", "zimage-diffusers", "is for Z-Image"),
    ("tiny-sd3", "sd3-kohya", "kohya-ss/sd-scripts#1743"),
]


def test_other_family_and_unreadable_layouts_are_refused_before_loading():
    CACHE.release()
    loads = CACHE.loads
    for model, lora, says in REFUSED:
        with pytest.raises(InputError) as err:
            colab_sd.generate(model=model, **CALL, loras=[(lora, 1.0)])
        text = str(err.value)
        assert says in text and "\n" not in text and lora in text, (model, lora, text)
    assert CACHE.loads == loads and CACHE.entry is None  # refused from the headers: nothing was loaded


@pytest.mark.parametrize("lora,says", [("flux-zero", "changes no layer"),
                                       ("flux-nomatch", "has no layer that matches"),
                                       ("flux-absent", "not found in the base model")])
def test_a_lora_that_changes_nothing_is_an_error_not_the_base_image(lora, says):
    base = base_image("flux")
    with pytest.raises(InputError) as err:
        colab_sd.generate(model=MODELS["flux"], **CALL, loras=[(lora, 1.0)])
    assert says in str(err.value) and "\n" not in str(err.value)
    assert np.array_equal(pixels(colab_sd.generate(model=MODELS["flux"], **CALL)), base)  # nothing left behind


# ---------------------------------------------------------------------------------------------- infotext


def test_infotext_records_the_loras_and_generate_from_reproduces_it(library, tmp_path, capsys):
    from PIL import Image

    from colab_sd.cli import main
    from colab_sd.generation import metadata
    from colab_sd.infotext import read_parameters

    code = main(["generate", "-m", "tiny-flux-dev", "-p", "a red cat <lora:flux-kohya:0.7>", "--lora",
                 "flux-aitoolkit:0.5", "--steps", "2", "--width", "64", "--height", "64", "--seed", "99",
                 "--dir", str(library), "--out", str(tmp_path / "a")])
    first = capsys.readouterr().out.split()
    assert code == 0 and len(first) == 1
    written = read_parameters(first[0])
    assert written["prompt"] == "a red cat <lora:flux-kohya:0.7> <lora:flux-aitoolkit:0.5>"
    # `Lora hashes` as A1111 / Forge write it: AutoV3 (what CivitAI looks LoRAs up by), in the tags' order
    assert [(item["name"], item["hash"]) for item in written["loras"]] == [
        (name, metadata.lora_hash(library / "lora" / f"{name}.safetensors"))
        for name in ("flux-kohya", "flux-aitoolkit")]
    assert "Distilled CFG Scale: 3.5" in written["text"]
    code = main(["generate", "--from", first[0], "--dir", str(library), "--out", str(tmp_path / "b")])
    second = capsys.readouterr().out.split()
    assert code == 0 and len(second) == 1
    with Image.open(first[0]) as a, Image.open(second[0]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert read_parameters(second[0])["text"] == written["text"]  # `Lora hashes` in tag order both times


# ---------------------------------------------------------------------------------------------- quantized bases


@pytest.mark.parametrize("model,lora", [("tiny-flux-dev-Q8_0.gguf", "flux-kohya"),
                                        ("tiny-zimage-Q8_0.gguf", "zimage-kohya-qkv"),
                                        ("tiny-zimage-fp8-scaled", "zimage-kohya-qkv")])
def test_lora_over_a_quantized_transformer(model, lora):
    """GGUF Q8_0 (weights stay packed: diffusers' GGUF Linear under peft's LoRA layer) and ComfyUI scaled fp8
    (rescaled to the compute dtype while loading, then a plain model for the LoRA)."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    base = base_image("quantized", model)
    styled = pixels(colab_sd.generate(model=model, **with_tag(lora, 1)))
    assert moved(styled, base) > MOVED
    transformer = CACHE.entry.pipe.transformer
    adapters = [n for n, m in transformer.named_modules() if hasattr(m, "lora_A") and m.lora_A]
    packed = [n for n, p in transformer.named_parameters() if isinstance(p, GGUFParameter)]
    assert adapters and bool(packed) == model.endswith(".gguf")
    assert not packed or any(".base_layer." in n for n in packed)  # packed weights under the LoRA layers
    assert np.array_equal(pixels(colab_sd.generate(model=model, **with_tag(lora, 0))), base)


# ---------------------------------------------------------------------------------------------- probe (headers)

REAL = [  # real widths: Flux.1 3072 (MLP 4), Klein 4B 3072 / 9B 4096 (SwiGLU 3), Z-Image 3840, Lumina 2 2304
    ({"lora_unet_single_blocks_0_linear1": (3072, 21504)}, {}, "flux", "MLP ratio"),
    ({"lora_unet_single_blocks_0_linear1": (3072, 27648)}, {}, "flux2", "MLP ratio"),
    ({"diffusion_model.double_blocks.0.img_mlp.0": (3072, 18432)}, {}, "flux2", "MLP ratio"),
    ({"diffusion_model.double_blocks.0.img_attn.qkv": (4096, 12288)}, {}, "flux2", "Flux.2 widths"),
    ({"lora_unet_double_blocks_0_img_mod_lin": (3072, 18432)}, {}, "flux", "only in Flux.1"),
    ({"lora_unet_double_blocks_0_img_attn_qkv": (3072, 9216)}, {}, "flux", "(assumed)"),
    ({"lora_unet_double_blocks_0_img_attn_qkv": (3072, 9216)},
     {"modelspec.architecture": "Flux.2-klein-4b/lora"}, "flux2", "modelspec.architecture"),
    ({"transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj": (3072, 27648)}, {}, "flux2", "only in Flux.2"),
    ({"transformer.distilled_guidance_layer.layers.0.linear_1": (5120, 5120)}, {}, "chroma", "guidance approximator"),
    ({"diffusion_model.layers.0.attention.qkv": (3840, 11520)}, {}, "zimage", "Z-Image"),
    ({"lora_unet_noise_refiner_0_feed_forward_w1": (3840, 10240)}, {}, "zimage", "Z-Image"),
    ({"diffusion_model.layers.0.attention.qkv": (2304, 6912)}, {}, "lumina", "Lumina 2 width"),
]


@pytest.mark.parametrize("modules,metadata,family,why", REAL, ids=[f"{r[2]}-{i}" for i, r in enumerate(REAL)])
def test_probe_tells_the_lora_family_from_real_shapes(modules, metadata, family, why):
    from colab_sd.probe.rules import inspect_keys

    shapes = {}
    for module, (features_in, features_out) in modules.items():
        down, up = ("lora_down", "lora_up") if module.startswith("lora_unet_") else ("lora_A", "lora_B")
        shapes[f"{module}.{down}.weight"] = [16, features_in]
        shapes[f"{module}.{up}.weight"] = [features_out, 16]
    found = inspect_keys(shapes, metadata)
    assert (found.kind, found.family) == ("lora", family) and why in found.reasons[-1], found.reasons


def test_civitai_base_models_of_every_family_map_to_its_family_id():
    """Recreate decides whether a CivitAI LoRA / checkpoint can run from its `baseModel`: every name the registry
    lists for a family ("ZImageTurbo", "Flux.2 Klein 4B", "SD 3.5 Large"…) must give that family's id."""
    from colab_sd.civitai.resources import family_of
    from colab_sd.generation.families import REGISTRY

    for fam in REGISTRY.values():
        names = set(fam.civitai) | {n for v in fam.variants for n in fam.for_variant(v).civitai}
        assert {name: family_of(name) for name in names} == {name: fam.id for name in names}


def test_flux_kohya_single_block_linear1_converts_at_the_real_widths_only():
    """Why the tiny Flux files above have no `single_blocks_N_linear1`: diffusers' Flux kohya converter splits it at
    the released widths (3072 for q, k, v and 12288 for the MLP), so a real-width one converts into those four
    modules and a tiny one cannot be read at all."""
    from diffusers import FluxPipeline

    def linear1(width: int) -> dict:
        return {"lora_unet_single_blocks_0_linear1.lora_down.weight": torch.ones(1, width),
                "lora_unet_single_blocks_0_linear1.lora_up.weight": torch.ones(7 * width, 1),
                "lora_unet_single_blocks_0_linear1.alpha": torch.tensor(1.0)}

    converted = FluxPipeline.lora_state_dict(linear1(3072))
    block = "transformer.single_transformer_blocks.0"
    assert {k: tuple(v.shape) for k, v in converted.items() if k.endswith("lora_B.weight")} == {
        f"{block}.attn.to_q.lora_B.weight": (3072, 1), f"{block}.attn.to_k.lora_B.weight": (3072, 1),
        f"{block}.attn.to_v.lora_B.weight": (3072, 1), f"{block}.proj_mlp.lora_B.weight": (12288, 1)}
    with pytest.raises(AssertionError):
        FluxPipeline.lora_state_dict(linear1(32))
