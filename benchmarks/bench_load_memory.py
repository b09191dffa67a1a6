"""Peak host RSS and load time: colab_sd's loaders against plain diffusers, on the same full-size files.

    python benchmarks/bench_load_memory.py [--dir /tmp/bench-load] [--only sdxl|flux] [--keep]

Files (built once, random weights; the architectures from colab_sd's bundled configs on the meta device, so no
weights are downloaded):
- an SDXL fp16 single file in the original (CivitAI) layout, ~6.9 GB;
- a Flux dev transformer as a Q4_0 GGUF (diffusers-layout keys, Linear weights Q4_0, the rest F32), ~6.8 GB.
Each load runs in a fresh process (python -c), on the CPU, measured by the child's VmHWM (its own peak resident
set, mapped file pages included), its sampled peak of anonymous memory (RssAnon: what a Colab runtime dies of) and
wall time (the fastest of --repeat loads per side, run in alternating order); the two sides load the same file
with the same dtype. Prints one table and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CONFIGS = ROOT / "colab_sd" / "generation" / "configs"
CHUNK = 64 << 20


def _random_fill(fh, nbytes: int) -> None:
    """Random bytes (page-cache honest: not sparse zeros), written in 64 MiB pieces."""
    while nbytes > 0:
        n = min(CHUNK, nbytes)
        fh.write(os.urandom(n))
        nbytes -= n


def make_sdxl(path: Path) -> Path:
    """SDXL in the original single-file layout, fp16, built on the meta device from the bundled sdxl config."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    import tiny_models

    folder = CONFIGS / "sdxl"
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2")))
    sd = tiny_models.unet_to_original(unet.state_dict(), unet.config.layers_per_block)
    sd.update(tiny_models.vae_to_original(vae.state_dict()))
    sd.update(tiny_models.clip_to_original(te1.state_dict(), "conditioner.embedders.0.transformer."))
    sd.update(tiny_models.open_clip_to_original(te2.state_dict(), "conditioner.embedders.1.model."))
    shapes = {k: list(v.shape) for k, v in sd.items()}
    del sd, unet, vae, te1, te2
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        _random_fill(fh, offset)
    del torch
    return path


def make_flux_gguf(path: Path) -> Path:
    """A Flux dev transformer (bundled config) as GGUF: Linear weights Q4_0 (random blocks), the rest F32."""
    import gguf
    import numpy as np
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(
            FluxTransformer2DModel.load_config(str(CONFIGS / "flux-dev" / "transformer")))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    q4 = gguf.GGMLQuantizationType.Q4_0
    block, size = gguf.GGML_QUANT_SIZES[q4]
    writer = gguf.GGUFWriter(str(path), "flux")
    plan = []
    for name, shape in shapes.items():
        if len(shape) == 2 and name.endswith(".weight") and shape[1] % block == 0:
            raw_shape = (shape[0], shape[1] // block * size)
            writer.add_tensor_info(name, raw_shape, np.dtype(np.uint8), raw_shape[0] * raw_shape[1], raw_dtype=q4)
            plan.append(("q4", raw_shape))
        else:
            n = int(np.prod(shape))
            writer.add_tensor_info(name, shape, np.dtype(np.float32), n * 4)
            plan.append(("f32", shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(0)
    for kind, shape in plan:
        if kind == "q4":
            writer.write_tensor_data(rng.integers(0, 256, size=shape, dtype=np.uint8))
        else:
            writer.write_tensor_data((rng.standard_normal(shape, dtype=np.float32) * 0.02))
    writer.close()
    return path


LOADERS = {
    # (colab_sd, plain diffusers) snippets run in a fresh interpreter; FILE and CONFIG are substituted
    "sdxl": (
        "from colab_sd.generation.models import resolve_model\n"
        "from colab_sd.generation.loader import load_pipeline\n"
        "import torch\n"
        "ref = resolve_model(FILE)\n"
        "pipe, _ = load_pipeline(ref, torch.float16)\n",
        "import torch, diffusers\n"
        "pipe = diffusers.StableDiffusionXLPipeline.from_single_file(FILE, config=CONFIG, local_files_only=True,"
        " torch_dtype=torch.float16)\n"),
    "flux": (
        "from colab_sd.generation import families\n"
        "from colab_sd.generation.families.load import load_transformer\n"
        "from pathlib import Path\n"
        "import torch\n"
        "model = load_transformer(Path(FILE), families.lookup('flux', 'dev'), torch.float16, Path(CONFIG))\n",
        "import torch, diffusers\n"
        "model = diffusers.FluxTransformer2DModel.from_single_file(FILE, config=CONFIG, subfolder='transformer',"
        " local_files_only=True, torch_dtype=torch.float16,"
        " quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=torch.float16))\n"),
}
# VmHWM (the child's own high-water mark), not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child
# would report this script's peak (it held tensors while building the files). VmHWM counts a memory-mapped file's
# pages too, which the kernel drops under pressure; what kills a Colab runtime is anonymous memory, so the child also
# samples RssAnon every 10 ms and reports its peak.
PROBE = """import json, threading, time
def _status(key):
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key + ':'))
anon_peak, done = [0], threading.Event()
def _sample():
    while not done.is_set():
        anon_peak[0] = max(anon_peak[0], _status('RssAnon'))
        time.sleep(0.01)
threading.Thread(target=_sample, daemon=True).start()
t = time.perf_counter()
{body}
seconds = time.perf_counter() - t
done.set()
anon_peak[0] = max(anon_peak[0], _status('RssAnon'))
print(json.dumps({{'seconds': seconds, 'peak_rss': _status('VmHWM'), 'peak_anon': anon_peak[0]}}))
"""
BASE = ("import torch, diffusers, transformers, json\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print(json.dumps({k: int(status[k].split()[0]) * 1024 for k in ('VmHWM', 'RssAnon')}))")


def measure(body: str, file: Path, config: Path) -> dict:
    code = PROBE.format(body=body.replace("FILE", repr(str(file))).replace("CONFIG", repr(str(config))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"loader failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline() -> dict:
    out = subprocess.run([sys.executable, "-c", BASE], capture_output=True, text=True).stdout.strip()
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/bench-load")
    parser.add_argument("--only", choices=sorted(LOADERS))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--repeat", type=int, default=2,
                        help="loads per side, alternating the order (fastest time and highest peaks are kept)")
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    from colab_sd.generation.configs import config_folder

    files = {"sdxl": (folder / "sdxl-random-fp16.safetensors", make_sdxl, config_folder("sdxl")),
             "flux": (folder / "flux-dev-random-Q4_0.gguf", make_flux_gguf, CONFIGS / "flux-dev")}
    base = baseline()
    print(f"baseline (python + torch + diffusers imported): {base['VmHWM'] / 1e9:.2f} GB RSS, "
          f"{base['RssAnon'] / 1e9:.2f} GB anonymous")
    print("| file | size | loader | load s | peak RSS GB | peak anonymous GB | anonymous above baseline GB |")
    print("|---|---|---|---|---|---|---|")
    for name, (path, make, config) in files.items():
        if args.only and name != args.only:
            continue
        if not path.exists():
            started = time.perf_counter()
            make(path)
            print(f"(built {path.name} in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        results = {}
        sides = list(zip(("colab_sd", "diffusers"), LOADERS[name]))
        for round_ in range(args.repeat):  # alternate who goes first: the page cache favours the second load
            for side, body in (sides if round_ % 2 else sides[::-1]):
                r = measure(body, path, config)
                best = results.setdefault(side, r)
                results[side] = {"seconds": min(best["seconds"], r["seconds"]),
                                 "peak_rss": max(best["peak_rss"], r["peak_rss"]),
                                 "peak_anon": max(best["peak_anon"], r["peak_anon"])}
        for side in ("colab_sd", "diffusers"):
            r = results[side]
            print(f"| {path.name} | {path.stat().st_size / 1e9:.1f} GB | {side} | {r['seconds']:.1f} | "
                  f"{r['peak_rss'] / 1e9:.2f} | {r['peak_anon'] / 1e9:.2f} | "
                  f"{(r['peak_anon'] - base['RssAnon']) / 1e9:.2f} |")
        a, b = results["colab_sd"], results["diffusers"]
        print(f"ratio {name}: colab_sd / diffusers: peak RSS {a['peak_rss'] / b['peak_rss']:.2f}, peak anonymous "
              f"{a['peak_anon'] / b['peak_anon']:.2f}, load time {a['seconds'] / b['seconds']:.2f}")
        if not args.keep:
            path.unlink()


if __name__ == "__main__":
    main()
