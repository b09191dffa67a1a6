"""Print the memory plan's decisions as a Markdown table (the README's), from the code's own rules.

    python scripts/memory_plan_table.py

Rows: the released files of each family (sizes from the families reference §3–§4; the scaled fp8 rows are
parameters × 1 byte, est., as is Z-Image's fp8 row); columns: what
`colab_sd.generation.memory_plan.decide` chooses on a free Colab T4 (with and without bitsandbytes) and on a
24 GB bf16 GPU. Nothing is loaded; no torch.
"""
from __future__ import annotations

from colab_sd.generation import families
from colab_sd.generation.memory_plan import GB, Machine, Part, decide

# (family, variant, file label, file size GB, stored)
ROWS = (
    ("sdxl", None, "SDXL fp16 checkpoint", 6.9, "fp16"),
    ("zimage", None, "Z-Image Turbo bf16", 12.3, "bf16"),
    ("zimage", None, "Z-Image Turbo Q8_0 GGUF", 6.6, "gguf"),
    ("zimage", None, "Z-Image Turbo fp8", 6.2, "fp8"),
    ("zimage", None, "Z-Image Turbo scaled fp8", 6.2, "fp8-scaled"),
    ("flux", "dev", "Flux dev bf16", 23.8, "bf16"),
    ("flux", "dev", "Flux dev fp8", 11.9, "fp8"),
    ("flux", "dev", "Flux dev scaled fp8", 11.9, "fp8-scaled"),
    ("flux", "dev", "Flux dev Q4_K_M GGUF", 6.8, "gguf"),
    ("flux", "schnell", "Flux schnell Q5_K_M GGUF", 8.4, "gguf"),
    ("chroma", None, "Chroma Q4 GGUF", 5.5, "gguf"),
    ("sd3", "medium", "SD3 Medium fp16", 4.2, "fp16"),
    ("sd3", "3.5-medium", "SD3.5 Medium fp16", 5.1, "fp16"),
    ("sd3", "3.5-large", "SD3.5 Large bf16", 16.5, "bf16"),
    ("sd3", "3.5-large", "SD3.5 Large Q4 GGUF", 5.0, "gguf"),
    ("flux2", "klein-4b", "Flux.2 Klein 4B bf16", 7.75, "bf16"),
    ("flux2", "klein-4b", "Flux.2 Klein 4B scaled fp8", 3.9, "fp8-scaled"),
    ("flux2", "klein-9b", "Flux.2 Klein 9B bf16", 18.0, "bf16"),
    ("flux2", "dev", "Flux.2 dev bf16", 64.0, "bf16"),
    ("qwen-image", None, "Qwen-Image bf16", 41.0, "bf16"),
    ("hidream", None, "HiDream-I1 bf16", 34.0, "bf16"),
)
MACHINES = (Machine.t4(), Machine.t4(bitsandbytes=False),
            Machine("24 GB bf16 GPU", int(23.5 * GB), int(28 * GB), bf16=True, bitsandbytes=True))


def cell(fam, parts, machine) -> str:
    plan = decide(fam, parts, machine)
    if not fam.supported:
        return "refused (not loaded by colab_sd)" + ("" if plan.fits else f"; {_short(plan)}")
    if not plan.fits:
        return f"refused; {_short(plan)}"
    words = {"gpu": "GPU", "model_offload": "model offload", "sequential_offload": "sequential offload"}
    te = "" if plan.text_encoder == "fp16" else f", encoders {plan.text_encoder}"
    kept = ", transformer kept fp8" if plan.storage == "fp8" else ""
    return f"{words[plan.placement]}, {plan.dtype}{kept}{te}"


def _short(plan) -> str:
    return f"would fit: {plan.suggestion}" if plan.suggestion else "does not fit"


def main() -> None:
    print("| model file | T4 + bitsandbytes | T4 without bitsandbytes | 24 GB bf16 GPU |")
    print("|---|---|---|---|")
    for family, variant, label, size, stored in ROWS:
        fam = families.lookup(family, variant)
        den = Part("unet" if not fam.is_transformer else "transformer", fam.params, int(size * GB), stored)
        parts = [den] + [Part(c.role, c.params, c.size, "bf16") for c in fam.components]
        print(f"| {label} ({size:g} GB) | " + " | ".join(cell(fam, parts, m) for m in MACHINES) + " |")


if __name__ == "__main__":
    main()
