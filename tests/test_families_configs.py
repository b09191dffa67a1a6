"""The bundled config folders of the transformer families: built on the meta device, the models have the released
shapes the families reference lists (so a real file loads into them), and a folder is assembled with the
tokenizer vocabularies fetched once from their public repo (the fake Hub on 127.0.0.1)."""
from __future__ import annotations

import json

import pytest

from colab_sd.generation import families
from colab_sd.generation.configs import BUNDLED

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# config folder → {key: shape} from the reference §1 marker table
SHAPES = {
    "zimage": {"cap_embedder.1.weight": [3840, 2560]},
    "flux-dev": {"x_embedder.weight": [3072, 64], "time_text_embed.guidance_embedder.linear_1.weight": [3072, 256]},
    "flux-schnell": {"x_embedder.weight": [3072, 64]},
    "chroma": {"x_embedder.weight": [3072, 64]},
    "sd3-medium": {"pos_embed.pos_embed": [1, 36864, 1536]},
    "sd3.5-medium": {"pos_embed.pos_embed": [1, 147456, 1536], "transformer_blocks.12.attn2.to_q.weight": [1536, 1536]},
    "sd3.5-large": {"transformer_blocks.37.ff.net.0.proj.weight": [9728, 2432]},
    "flux2-klein-4b": {"context_embedder.weight": [3072, 7680], "x_embedder.weight": [3072, 128]},
}


@pytest.mark.parametrize("folder", list(SHAPES))
def test_bundled_transformer_configs_have_the_released_shapes(folder):
    import diffusers
    from accelerate import init_empty_weights

    index = json.loads((BUNDLED / folder / "model_index.json").read_text())
    cls = getattr(diffusers, index["transformer"][1])
    with init_empty_weights():
        model = cls.from_config(cls.load_config(str(BUNDLED / folder / "transformer")))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    for key, shape in SHAPES[folder].items():
        assert shapes.get(key) == shape, (key, shapes.get(key))


def test_every_supported_transformer_family_has_a_bundled_folder():
    for fam in families.REGISTRY.values():
        for variant in [None] + list(fam.variants):
            f = fam.for_variant(variant)
            if f.is_transformer and f.supported:
                index = json.loads((BUNDLED / f.config / "model_index.json").read_text())
                assert index["_class_name"] == f.pipeline or f.variant == "kontext"
                assert all((BUNDLED / f.config / tok / "tokenizer_config.json").is_file() for tok in f.tokenizers)


def test_config_folder_is_assembled_with_the_fetched_vocabulary(tmp_path, monkeypatch, hub):
    import tiny_families
    from transformers import AutoTokenizer

    from colab_sd.generation.families.load import config_folder

    tok = tmp_path / "tok"
    AutoTokenizer.from_pretrained(str(tiny_families.write_qwen_tokenizer(tmp_path / "src"))).save_pretrained(str(tok))
    hub.add_repo("Tongyi-MAI/Z-Image-Turbo", {f"tokenizer/{n}": (tok / n).read_bytes() for n in ("tokenizer.json",)})
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "configs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    folder = config_folder(families.lookup("zimage"))
    assert folder == tmp_path / "configs" / "zimage" and (folder / "tokenizer" / "tokenizer.json").is_file()
    assert AutoTokenizer.from_pretrained(str(folder / "tokenizer"))("a photo").input_ids
    hits = len(hub.hits("/Tongyi-MAI/Z-Image-Turbo/resolve/"))
    assert config_folder(families.lookup("zimage")) == folder  # assembled once
    assert len(hub.hits("/Tongyi-MAI/Z-Image-Turbo/resolve/")) == hits
