"""The memory plan is a pure function: file sizes, parameters, machine → placement, precision, one line.
Checked against the T4 (15 GB VRAM, 12.7 GB RAM of which ~10.7 GB free) and a 140 GB GPU, with the released
file sizes of the families reference (§3–§4)."""
from __future__ import annotations

import pytest

from colab_sd.errors import InputError
from colab_sd.generation import families
from colab_sd.generation.memory_plan import GB, Machine, Part, decide

T4 = Machine.t4()
T4_NO_BNB = Machine.t4(bitsandbytes=False)
BIG = Machine("H200", int(139 * GB), int(120 * GB), bf16=True, bitsandbytes=True)


def parts(fam, file_gb: float, stored: str):
    out = [Part("transformer", fam.params, int(file_gb * GB), stored)]
    return out + [Part(c.role, c.params, c.size, "bf16") for c in fam.components]


@pytest.mark.parametrize("family,variant,file_gb,stored", [
    ("zimage", None, 6.6, "gguf"),  # Z-Image Turbo Q8_0
    ("flux", "dev", 6.8, "gguf"),  # Flux dev Q4_K_M
    ("flux", "schnell", 6.8, "gguf"),
    ("chroma", None, 5.5, "gguf"),
    ("sd3", "medium", 4.2, "fp16"),  # SD3 medium fp16: small enough as it is
    ("sd3", "3.5-large", 5.0, "gguf"),  # SD3.5 Large Q4 GGUF
    ("flux2", "klein-4b", 7.75, "bf16"),  # Klein 4B bf16: loads straight to the GPU, encoder quantized
])
def test_t4_fits_what_the_reference_says_fits(family, variant, file_gb, stored):
    fam = families.lookup(family, variant)
    plan = decide(fam, parts(fam, file_gb, stored), T4)
    assert plan.fits, plan.line
    assert plan.vram_need <= T4.vram_free and plan.ram_need <= T4.ram_available - 1 * GB
    assert plan.dtype == "fp16"  # Turing: no fast bf16
    assert plan.line.startswith(fam.name) and "fits 15.0 GB VRAM / 10.7 GB RAM" in plan.line


@pytest.mark.parametrize("family,variant,file_gb", [
    ("qwen-image", None, 41.0), ("hidream", None, 34.0), ("flux2", "dev", 64.0), ("flux2", "klein-9b", 18.0),
    ("flux", "dev", 23.8), ("zimage", None, 12.3), ("sd3", "3.5-large", 16.5),
])
def test_t4_refuses_in_one_line_with_size_and_what_would_fit(family, variant, file_gb):
    fam = families.lookup(family, variant)
    plan = decide(fam, parts(fam, file_gb, "bf16"), T4)
    assert not plan.fits
    assert "\n" not in plan.line
    assert fam.name in plan.line and f"{file_gb:.1f} GB" in plan.line and "would fit:" in plan.line
    if fam.params <= 12:
        assert "GGUF" in plan.suggestion  # a smaller file that fits is named
    else:
        assert "GPU with more memory" in plan.suggestion


def test_big_gpu_takes_everything_on_the_gpu_in_bf16():
    fam = families.lookup("flux", "dev")
    plan = decide(fam, parts(fam, 23.8, "bf16"), BIG)
    assert plan.fits and plan.placement == "gpu" and plan.dtype == "bf16" and plan.text_encoder == "fp16"


def test_encoders_are_quantized_before_offloading_and_only_with_bitsandbytes():
    fam = families.lookup("zimage")
    with_bnb = decide(fam, parts(fam, 6.6, "gguf"), T4)
    assert with_bnb.placement == "gpu" and with_bnb.text_encoder in ("8-bit", "4-bit")
    without = decide(fam, parts(fam, 6.6, "gguf"), T4_NO_BNB)
    assert without.text_encoder == "fp16"
    assert not without.fits or without.placement != "gpu"


def test_fp16_nan_families_run_in_fp32_without_bf16():
    fam = families.lookup("qwen-image")
    plan = decide(fam, parts(fam, 11.5, "gguf"), T4)
    assert plan.dtype == "fp32"


def test_overrides_are_obeyed_and_checked():
    fam = families.lookup("flux", "dev")
    forced = decide(fam, parts(fam, 6.8, "gguf"), T4, placement="model_offload", text_encoder="4-bit")
    assert forced.placement == "model_offload" and forced.text_encoder == "4-bit"
    assert "model CPU offload" in forced.line
    with pytest.raises(InputError, match="placement"):
        decide(fam, parts(fam, 6.8, "gguf"), T4, placement="everywhere")


def test_sdxl_plan_on_t4_is_all_on_gpu():
    fam = families.lookup("sdxl")
    plan = decide(fam, [Part("unet", 2.57, int(6.9 * GB), "fp16")], T4)
    assert plan.fits and plan.placement == "gpu"


def test_cpu_plan_is_fp32_and_checks_ram():
    fam = families.lookup("zimage")
    cpu = Machine("CPU", 0, int(20 * GB))
    assert decide(fam, [Part("transformer", 0.001, int(0.002 * GB), "bf16")], cpu).fits
    assert not decide(fam, parts(fam, 12.3, "bf16"), cpu).fits  # 6B + 4B params in fp32: 40 GB


def test_table_script_prints_the_rules():
    import runpy
    import sys
    from io import StringIO
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "memory_plan_table.py"
    out, old = StringIO(), sys.stdout
    sys.stdout = out
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.stdout = old
    text = out.getvalue()
    assert text.startswith("| model file") and "Flux dev" in text and "Qwen-Image" in text and "refused" in text
    # the README's table is this output, as it is now (regenerate it with the script when the rules change)
    readme = (script.parents[1] / "README.md").read_text(encoding="utf-8")
    assert text.strip() in readme


def test_scaled_fp8_is_rescaled_in_ram_before_loading():
    """A ComfyUI scaled fp8 file becomes a whole state dict in the compute dtype before diffusers takes it
    (families.fp8): its load copy is its resident size even when going to the GPU, unlike a plain fp8 file."""
    plain = Part("transformer", 4.0, int(4 * GB), "fp8")
    scaled = Part("transformer", 4.0, int(4 * GB), "fp8-scaled")
    assert plain.resident("fp16") == scaled.resident("fp16") == 8 * GB
    assert plain.load_copy("fp16", True) < 1 * GB and scaled.load_copy("fp16", True) == 8 * GB
    fam = families.lookup("zimage")
    plan = decide(fam, parts(fam, 6.2, "fp8-scaled"), T4)
    assert not plan.fits and "scaled fp8" in plan.line and "Q8_0 GGUF" in plan.suggestion
    cpu = decide(fam, [Part("transformer", 0.001, int(0.001 * GB), "fp8-scaled")], Machine("CPU", 0, int(20 * GB)))
    assert cpu.fits and "scaled fp8: on the CPU in fp32" in cpu.line


def test_plain_fp8_is_kept_fp8_only_when_16_bit_does_not_fit():
    """Z-Image's fp8 file (6.2 GB) does not fit a T4 upcast (12.3 GB + encoders); kept fp8 it does, all on the
    GPU: file size + 5% resident, the file's size in RAM while loading. Never on the CPU, never for other files,
    never when the 16-bit transformer fits, never in an fp32 plan."""
    fam = families.lookup("zimage")
    plan = decide(fam, parts(fam, 6.2, "fp8"), T4)
    assert plan.fits and plan.storage == "fp8" and plan.placement == "gpu" and plan.dtype == "fp16"
    assert "kept fp8" in plan.line and plan.ram_need >= 6.2 * GB and plan.vram_need <= T4.vram_free
    assert any("gpu + encoders" in step for step in plan.steps)  # the 16-bit transformer was tried first
    assert decide(fam, parts(fam, 6.2, "fp8"), BIG).storage == ""  # fits upcast: upcast
    assert decide(fam, parts(fam, 12.3, "bf16"), T4).storage == ""
    assert decide(fam, [Part("transformer", 0.001, int(0.001 * GB), "fp8")], Machine("CPU", 0, int(20 * GB))).storage == ""
    qwen = families.lookup("qwen-image")  # fp16 NaNs: an fp32 plan on a T4, where fp8 storage is not offered
    assert decide(qwen, parts(qwen, 20.4, "fp8"), T4).storage == ""
    flux = families.lookup("flux", "dev")
    assert not decide(flux, parts(flux, 11.9, "fp8"), T4).fits  # 11.9 GB + encoders + activations > 15 GB
