"""Peak host RSS and load time of a ComfyUI scaled fp8 transformer: colab_sd's rescaling loader against plain
diffusers on the same file (which drops the scales: wrong weights, but the memory a naive load takes) and against
plain diffusers on the bf16 file of the same weights.

    python benchmarks/bench_fp8_rescale.py [--layers 4] [--dir /tmp/bench-fp8] [--dtype float16] [--keep] [--no-write]

The file: Z-Image's transformer at its real width (dim 3840, the bundled config) with `--layers` main layers
instead of 30 (4 → 1.45 B parameters; 30 is the released 6.15 B), in the released (fused-qkv) layout, random
weights quantized as ComfyUI does (per-tensor absmax / 448 → float8_e4m3fn, `scale_weight`, `scale_input`,
`scaled_fp8` marker). Each load runs in a fresh process on the CPU, measured by its VmHWM (peak resident set); all sides load to
the same dtype. Prints a table, the ratios and how far the rescaled weights are from the bf16 ones, and writes them
to the `bench_fp8_rescale` section of benchmarks/RESULTS.md (not with --no-write).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
CONFIGS = ROOT / "colab_sd" / "generation" / "configs"

# VmHWM (this process's own high-water mark), not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child
# would report this script's peak (it held the weights while building the files)
PROBE = """
import time, torch, diffusers
started = time.perf_counter()
{body}
seconds = time.perf_counter() - started
import json
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"peak_rss": hwm, "seconds": seconds}}))
"""
LOADERS = {
    "colab_sd (rescaled)": ("SCALED", "from colab_sd.generation import families\n"
                           "from colab_sd.generation.families.load import load_transformer\n"
                           "from pathlib import Path\n"
                           "model = load_transformer(Path(FILE), families.lookup('zimage'), DTYPE, Path(CONFIG))"),
    "diffusers (scales dropped)": ("SCALED", "model = diffusers.ZImageTransformer2DModel.from_single_file(FILE, "
                                   "config=CONFIG, subfolder='transformer', local_files_only=True, torch_dtype=DTYPE)"),
    "diffusers, bf16 file": ("BF16", "model = diffusers.ZImageTransformer2DModel.from_single_file(FILE, "
                             "config=CONFIG, subfolder='transformer', local_files_only=True, torch_dtype=DTYPE)"),
}


def config_folder(folder: Path, layers: int) -> Path:
    """The bundled Z-Image config with `layers` main layers (what diffusers builds the model from)."""
    dest = folder / "zimage-config"
    (dest / "transformer").mkdir(parents=True, exist_ok=True)
    config = json.loads((CONFIGS / "zimage" / "transformer" / "config.json").read_text())
    config["n_layers"] = layers
    (dest / "transformer" / "config.json").write_text(json.dumps(config))
    return dest


def make_files(folder: Path, config: Path) -> tuple[Path, Path, dict]:
    """(scaled fp8 file, bf16 file, the bf16 weights' state dict) of one random transformer in the released layout."""
    import torch
    from diffusers import ZImageTransformer2DModel
    from safetensors.torch import save_file

    import tiny_families

    torch.manual_seed(0)
    model = ZImageTransformer2DModel.from_config(ZImageTransformer2DModel.load_config(str(config / "transformer")))
    with torch.no_grad():
        for p in model.parameters():  # the default init leaves some zeros and some torch.empty garbage
            p.normal_(0, 0.02)
    original = {k: v.to(torch.bfloat16) for k, v in tiny_families.zimage_to_original(model.state_dict()).items()}
    del model
    bf16 = folder / "zimage-bf16.safetensors"
    save_file({k: v.contiguous() for k, v in original.items()}, str(bf16))
    scaled = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, value in original.items():
        if value.dim() == 2 and key.endswith(".weight"):
            scale = (value.float().abs().amax() / 448.0).clamp(min=1e-12)
            scaled[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            scaled[key[: -len(".weight")] + ".scale_weight"] = scale
            scaled[key[: -len(".weight")] + ".scale_input"] = torch.tensor(1.0)
        else:
            scaled[key] = value
    path = folder / "zimage-fp8-scaled.safetensors"
    save_file(scaled, str(path))
    return path, bf16, original


def measure(body: str, file: Path, config: Path, dtype: str) -> dict:
    code = PROBE.format(body=body.replace("FILE", repr(str(file))).replace("CONFIG", repr(str(config)))
                        .replace("DTYPE", f"torch.{dtype}"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"loader failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def weight_error(scaled: Path, original: dict, dtype) -> tuple[float, float]:
    """(max |rescaled − bf16| over all weights, the same relative to each tensor's max |w|)."""
    from colab_sd.generation.families import fp8

    sd = fp8.rescaled(scaled, dtype)
    worst_abs = worst_rel = 0.0
    for key, value in sd.items():
        ref = original[key].float()
        diff = float((value.float() - ref).abs().max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(float(ref.abs().max()), 1e-12))
    return worst_abs, worst_rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dir", default="/tmp/bench-fp8")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--no-write", action="store_true", help="leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    import torch

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = config_folder(folder, args.layers)
    started = time.perf_counter()
    scaled, bf16, original = make_files(folder, config)
    params = sum(v.numel() for v in original.values()) / 1e9
    print(f"(built {scaled.name} {scaled.stat().st_size / 1e9:.2f} GB and {bf16.name} {bf16.stat().st_size / 1e9:.2f} "
          f"GB, {params:.2f} B parameters, in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    worst_abs, worst_rel = weight_error(scaled, original, getattr(torch, args.dtype))
    del original
    base = measure("pass", scaled, config, args.dtype)["peak_rss"]
    lines = []
    say = _tee(lines)  # every line also goes to RESULTS.md
    say(f"baseline (python + torch + diffusers imported): {base / 1e9:.2f} GB RSS; loads to {args.dtype}, "
        f"{params:.2f} B parameters ({params * (4 if args.dtype == 'float32' else 2):.2f} GB in that dtype)")
    say("")
    say("| file | loader | load s | peak RSS GB | RSS above baseline GB |")
    say("|---|---|---|---|---|")
    results = {}
    for side, (which, body) in LOADERS.items():
        file = scaled if which == "SCALED" else bf16
        r = results[side] = measure(body, file, config, args.dtype)
        say(f"| {file.name} ({file.stat().st_size / 1e9:.2f} GB) | {side} | {r['seconds']:.1f} | "
            f"{r['peak_rss'] / 1e9:.2f} | {(r['peak_rss'] - base) / 1e9:.2f} |")
    ours = results["colab_sd (rescaled)"]
    say("")
    for side in list(LOADERS)[1:]:
        other = results[side]
        say(f"- ratio colab_sd / {side}: peak RSS above baseline "
            f"{(ours['peak_rss'] - base) / max(other['peak_rss'] - base, 1):.2f}, "
            f"load time {ours['seconds'] / other['seconds']:.2f}")
    say(f"- rescaled weights vs the bf16 weights: max abs error {worst_abs:.2e}, max relative to the tensor's "
        f"max |w| {worst_rel:.3f} (fp8 e4m3 rounding: ≤ 1/16 = 0.0625)")
    if not args.no_write:
        from results_section import write_section

        text = ("## Scaled fp8 rescaling: colab_sd vs plain diffusers (benchmarks/bench_fp8_rescale.py)\n\n"
                f"Measured {time.strftime('%Y-%m-%d')} on this CPU machine ({os.cpu_count()} cores, shared), "
                f"`--layers {args.layers} --dtype {args.dtype}`, each load in a fresh process; peak RSS = VmHWM "
                "(the mapped file's pages included: clean and file-backed, the kernel drops them under pressure; "
                "the rest is the model in the load dtype).\n\n" + "\n".join(lines) + "\n")
        write_section(Path(__file__).with_name("RESULTS.md"), text, "<!-- bench_fp8_rescale begin -->",
                      "<!-- bench_fp8_rescale end -->")
    if not args.keep:
        shutil.rmtree(folder)


def _tee(lines: list):
    """print(), keeping each line for RESULTS.md as well."""
    def say(text: str) -> None:
        print(text)
        lines.append(text)
    return say


if __name__ == "__main__":
    main()
