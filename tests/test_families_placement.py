"""What a memory plan's placement turns into when the model is loaded and placed (no GPU here, so the CUDA side is
checked on the decisions and on the diffusers calls a pipeline receives, not on a GPU):

- "gpu": the transformer is loaded straight onto that GPU (`from_single_file(device=…)`), so no 16-bit copy of it
  passes through RAM; the plan counts ~0.5 GB of RAM for such a load. Any other placement loads on the CPU.
- "sequential_offload" really is sequential CPU offload (it was model offload, which needs the largest part to fit
  the GPU, the very thing the plan found it does not).
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from colab_sd.generation.cache import Entry  # noqa: E402
from colab_sd.generation.loader import load_device  # noqa: E402
from colab_sd.generation.memory_plan import Plan  # noqa: E402


def plan(placement: str) -> Plan:
    return Plan(placement, "fp16", "fp16", True, 0, 0, f"test plan: {placement}")


@pytest.mark.parametrize("placement, device, expected", [
    ("gpu", "cuda:1", "cuda:1"),  # Kaggle's second T4 in a batch worker: that GPU, not cuda:0
    ("gpu", "cuda", "cuda"),
    ("model_offload", "cuda:0", None),
    ("sequential_offload", "cuda:0", None),
    ("cpu", "cpu", None),
    ("gpu", "cpu", None),
])
def test_the_transformer_is_loaded_where_the_plan_keeps_it(placement, device, expected):
    assert load_device(plan(placement), device) == expected
    assert load_device(None, device) is None  # SD families: no plan, loaded as before


def test_load_transformer_passes_the_device_to_diffusers(tmp_path):
    """The real diffusers call with `device=` (the CPU here): the model comes back on that device, same weights."""
    import torch

    import tiny_families
    from colab_sd.generation import families
    from colab_sd.generation.families.load import load_transformer

    pipe = tiny_families.build_zimage()
    paths = tiny_families.save_zimage(pipe, tmp_path)
    model = load_transformer(paths["single"], families.lookup("zimage", "turbo"), torch.float32, paths["config"],
                             device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    ref = pipe.transformer.state_dict()
    got = model.state_dict()
    assert all(torch.allclose(got[k].float(), ref[k].float().to(torch.bfloat16).float()) for k in ref)


class _Calls:
    """A pipeline's placement API, recording what `Entry.place` asks of it (CUDA cannot run here)."""

    def __init__(self):
        self.calls = []
        self.vae = self

    def __getattr__(self, name):
        if name in ("enable_sequential_cpu_offload", "enable_model_cpu_offload", "to", "remove_all_hooks",
                    "enable_tiling", "disable_tiling"):
            return lambda *a, **k: self.calls.append((name, k.get("device", a[0] if a else None)))
        raise AttributeError(name)


def _entry(device: str) -> Entry:
    entry = Entry.__new__(Entry)
    entry.pipe, entry.device, entry.offloaded, entry._img2img = _Calls(), device, False, None
    return entry


def test_each_placement_calls_its_own_diffusers_offload():
    entry = _entry("cuda:0")
    entry.place(low_vram=True, vae_tiling=False, sequential=True)
    assert ("enable_sequential_cpu_offload", "cuda:0") in entry.pipe.calls and entry.offloaded == "sequential"
    entry.pipe.calls.clear()
    entry.place(low_vram=True, vae_tiling=False)  # the next plan fits model offload: hooks swapped, not stacked
    assert entry.pipe.calls[:2] == [("remove_all_hooks", None), ("enable_model_cpu_offload", "cuda:0")]
    entry.pipe.calls.clear()
    entry.place(low_vram=False, vae_tiling=False)
    assert entry.pipe.calls[:2] == [("remove_all_hooks", None), ("to", "cuda:0")] and entry.offloaded is False
    cpu = _entry("cpu")
    cpu.place(low_vram=True, vae_tiling=False, sequential=True)  # no offload without CUDA: on the CPU as it is
    assert cpu.pipe.calls[0] == ("to", "cpu") and cpu.offloaded is False


def test_the_request_can_force_the_plan(tmp_path, monkeypatch):
    """`placement=` / `text_encoder_precision=` (CLI --placement / --text-encoders) replace the plan's own choice,
    decided for a T4 (the machine described, as the README table is); a forced plan that cannot fit is refused in
    one line before loading; on the CPU there is one plan."""
    import tiny_families
    from colab_sd.errors import InputError
    from colab_sd.generation import GenerationRequest, memory_plan
    from colab_sd.generation.families import run
    from colab_sd.generation.models import resolve_model

    root = tmp_path / "models"
    paths = tiny_families.save_zimage(tiny_families.build_zimage(), root)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(paths["config"].parent))
    ref = resolve_model("tiny-zimage", str(root))
    monkeypatch.setattr(memory_plan.Machine, "detect", classmethod(lambda cls, device: cls.t4()))
    chosen = run.plan(ref, GenerationRequest(model="x"), "cuda", str(root))
    assert (chosen.placement, chosen.text_encoder) == ("gpu", "fp16")  # tiny: everything fits on the GPU
    forced = run.plan(ref, GenerationRequest(model="x", placement="sequential_offload", text_encoder_precision="4-bit"),
                      "cuda", str(root))
    assert (forced.placement, forced.text_encoder) == ("sequential_offload", "4-bit")
    assert "sequential CPU offload" in forced.line
    small = classmethod(lambda cls, device: cls("T4", int(0.001 * memory_plan.GB), int(64 * memory_plan.GB)))
    monkeypatch.setattr(memory_plan.Machine, "detect", small)
    with pytest.raises(InputError, match="does not fit this machine") as err:
        run.plan(ref, GenerationRequest(model="x", placement="gpu"), "cuda", str(root))
    assert "\n" not in str(err.value)
    monkeypatch.setattr(memory_plan.Machine, "detect",
                        classmethod(lambda cls, device: cls.t4(bitsandbytes=False)))
    with pytest.raises(InputError, match="8-bit text encoders need bitsandbytes"):
        run.plan(ref, GenerationRequest(model="x", text_encoder_precision="8-bit"), "cuda", str(root))
    with pytest.raises(InputError, match="unknown placement 'everywhere'"):
        GenerationRequest(model="x", placement="everywhere").validate()


def test_cli_takes_the_forced_plan_and_the_cpu_keeps_its_one_plan(tmp_path, monkeypatch, capsys):
    import tiny_families
    from colab_sd.cli import main

    root = tmp_path / "models"
    paths = tiny_families.save_zimage(tiny_families.build_zimage(), root)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(paths["config"].parent))
    args = ["generate", "--model", "tiny-zimage", "--prompt", "a cat", "--steps", "1", "--width", "64", "--height",
            "64", "--dir", str(root), "--out", str(tmp_path / "out"), "--placement", "sequential_offload",
            "--text-encoders", "4-bit"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "memory plan: Z-Image Turbo (tiny-zimage): on the CPU" in err
    assert "text encoder precision need a GPU: ignored" in err
    with pytest.raises(SystemExit):
        main(args[:-4] + ["--placement", "everywhere"])
    assert "invalid choice: 'everywhere'" in capsys.readouterr().err
