"""GGUF transformers are loaded from the file's own pages (copy-on-write memory map), not copied into RAM as
diffusers' reader does (`load_gguf_checkpoint` takes `tensor.data.copy()` of every tensor: two copies of the model in
RAM on a T4 that dies above 12.7 GB; benchmarks/bench_load_memory.py measures the full-size Flux case).
"""
from __future__ import annotations

import numpy as np
import pytest

import tiny_families
from colab_sd.errors import InputError
from colab_sd.generation.families import gguf_mmap


def _rss_anon() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))


@pytest.fixture(scope="module")
def big_gguf(tmp_path_factory):
    """~48 MB of Q8_0 Linear weights: large enough that a copy shows in RssAnon, small enough to write fast."""
    import torch

    rng = torch.Generator().manual_seed(0)
    sd = {f"blocks.{i}.linear.weight": torch.randn(1024, 1536, generator=rng) * 0.02 for i in range(24)}
    sd["norm.weight"] = torch.ones(1536)
    return tiny_families.save_gguf(sd, tmp_path_factory.mktemp("gguf") / "big-Q8_0.gguf", "flux")


def test_same_tensors_as_diffusers_reader(big_gguf):
    import torch
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    ours, theirs = gguf_mmap.state_dict(big_gguf), load_gguf_checkpoint(str(big_gguf))
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert type(ours[name]) is type(tensor) and getattr(ours[name], "quant_type", None) == \
            getattr(tensor, "quant_type", None)
        assert torch.equal(ours[name].as_tensor() if hasattr(ours[name], "as_tensor") else ours[name],
                           tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor)


_MEASURE = """
import sys
def anon():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("RssAnon:"))
from diffusers.models.model_loading_utils import load_gguf_checkpoint
from colab_sd.generation.families import gguf_mmap
before = anon()
sd = gguf_mmap.state_dict(sys.argv[2]) if sys.argv[1] == "ours" else load_gguf_checkpoint(sys.argv[2])
total = 0
for t in sd.values():  # touch every page of the packed weights, as moving them to the GPU does
    total += int((t.as_tensor() if hasattr(t, "as_tensor") else t).view(-1)[::4096].float().sum() != 0)
print(anon() - before, total)
"""


def test_reading_every_weight_copies_nothing_into_ram(big_gguf):
    """RssAnon (what kills a Colab runtime; the mapped file's pages are the page cache's) hardly moves while every
    tensor is read, where diffusers' reader holds a private copy of the whole file. Each side in a fresh process,
    so that neither reuses memory the other freed."""
    import subprocess
    import sys

    size = big_gguf.stat().st_size
    growth = {}
    for side in ("ours", "theirs"):
        out = subprocess.run([sys.executable, "-c", _MEASURE, side, str(big_gguf)], capture_output=True, text=True,
                             check=True).stdout.split()
        growth[side] = int(out[0])
        assert int(out[1]) > 0
    assert growth["theirs"] > 0.8 * size  # the copy this module avoids is real
    assert growth["ours"] < 0.2 * size, (growth, size)


def test_unsupported_quant_type_and_damaged_file_are_one_line(tmp_path):
    import gguf

    path = tmp_path / "iq2.gguf"
    writer = gguf.GGUFWriter(str(path), "flux")
    qtype = gguf.GGMLQuantizationType.IQ2_XXS
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    writer.add_tensor("blocks.0.linear.weight", np.zeros((4, type_size), dtype=np.uint8),
                      raw_shape=(4, type_size), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InputError, match="IQ2_XXS, which diffusers cannot dequantize: use a GGUF") as err:
        gguf_mmap.state_dict(path)
    assert "\n" not in str(err.value) and "Q4_K" in str(err.value)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="not a readable GGUF file"):
        gguf_mmap.state_dict(cut)


def test_the_probe_knows_ggml_block_sizes_and_sees_a_cut_file(big_gguf, tmp_path, capsys):
    """The header reader's block table is gguf-py's (no import of it in the light probe), and a GGUF cut short —
    header intact, tensor data missing — is 'truncated' for the probe, so `colab-sd models` and the downloader's
    own check say so (it was listed as a healthy Flux dev)."""
    import gguf

    from colab_sd import probe
    from colab_sd.cli import main
    from colab_sd.probe.headers import GGML_BLOCKS

    for qtype, (block, nbytes) in GGML_BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)] == (block, nbytes), qtype
    assert probe.inspect(big_gguf).kind != "unknown"
    root = tmp_path / "models"
    (root / "checkpoint").mkdir(parents=True)
    cut = root / "checkpoint" / "cut-Q8_0.gguf"
    cut.write_bytes(big_gguf.read_bytes()[: big_gguf.stat().st_size // 2])
    found = probe.inspect(cut)
    assert found.kind is None and any("truncated" in str(r) and "download it again" in str(r)
                                           for r in found.reasons), found.reasons
    assert main(["models", "--dir", str(root)]) == 0
    assert "truncated" in capsys.readouterr().out
