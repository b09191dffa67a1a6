"""`colab-sd models [--dir DIR] [--type KIND] [--json]`: the library as downloads left it."""
import json
import os
import subprocess
import sys

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.tokens import TokenStore
from fakes.civitai import TOKEN, FakeFile


def _fill(civitai, hub, model_bytes, models):
    civitai.add_version(model_id=5000, version_id=5001, model_name="Dreamy", model_type="LORA", base_model="SD 1.5",
                        trained_words=["dreamy light", "soft glow"],
                        files=[FakeFile(5101, "dreamy.safetensors", model_bytes["lora"])])
    hub.add_repo("org/tiny-sd", {"model_index.json": b"{}", "unet/config.json": b"{}",
                                 "unet/diffusion_pytorch_model.safetensors": b"w" * 2048})
    colab_sd.download("civitai:5001", models_dir=models, tokens=TokenStore(civitai=TOKEN, use_colab=False))
    colab_sd.download("org/tiny-sd", models_dir=models, tokens=TokenStore(use_colab=False))
    (models / "vae").mkdir(exist_ok=True)
    (models / "vae" / "plain.safetensors").write_bytes(model_bytes["vae"])  # copied in by hand: no sidecar
    (models / "lora" / "half.safetensors.part").write_bytes(b"x")  # an interrupted download is not a model


def test_table(civitai, hub, model_bytes, models, capsys):
    _fill(civitai, hub, model_bytes, models)
    assert cli.main(["models", "--dir", str(models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "SIZE", "BASE", "MODEL", "TRIGGER", "WORDS"]
    rows = {line.split()[1]: line for line in lines[1:-1]}
    assert set(rows) == {"tiny-sd", "dreamy.safetensors", "plain.safetensors"}
    assert rows["dreamy.safetensors"].startswith("lora") and "SD 1.5" in rows["dreamy.safetensors"]
    assert rows["dreamy.safetensors"].endswith("dreamy light, soft glow")
    assert "26.7 KB" in rows["dreamy.safetensors"]
    assert rows["tiny-sd"].startswith("checkpoint")
    assert lines[-1] == f"3 models in {models}"


def test_json_and_type_filter(civitai, hub, model_bytes, models, capsys):
    _fill(civitai, hub, model_bytes, models)
    assert cli.main(["models", "--dir", str(models), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["kind"], d["name"]) for d in data] == [("checkpoint", "tiny-sd"), ("lora", "dreamy.safetensors"),
                                                       ("vae", "plain.safetensors")]
    lora = data[1]
    assert lora["size"] == len(model_bytes["lora"]) and lora["base_model"] == "SD 1.5"
    assert lora["trigger_words"] == ["dreamy light", "soft glow"] and lora["family"] == "sd1"
    assert lora["source"] == "civitai:5001" and len(lora["sha256"]) == 64
    assert cli.main(["models", "--dir", str(models), "--json", "--type", "loras"]) == 0
    assert [d["name"] for d in json.loads(capsys.readouterr().out)] == ["dreamy.safetensors"]


def test_empty_missing_and_bad_type(tmp_path, capsys):
    assert cli.main(["models", "--dir", str(tmp_path / "nowhere")]) == 0
    assert "does not exist yet" in capsys.readouterr().err
    assert cli.main(["models", "--dir", str(tmp_path / "nowhere"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(SystemExit) as exited:  # a usage error: argparse's exit status 2
        cli.main(["models", "--dir", str(tmp_path), "--type", "sampler"])
    assert exited.value.code == 2 and "unknown model type 'sampler'" in capsys.readouterr().err


def test_registered_in_the_real_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_SD_HOME", str(tmp_path))
    (tmp_path / "embedding").mkdir()
    (tmp_path / "embedding" / "easyneg.pt").write_bytes(b"\0" * 10)
    out = subprocess.run([sys.executable, "-m", "colab_sd.cli", "models", "--json"], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert [(d["kind"], d["name"], d["size"]) for d in json.loads(out.stdout)] == [("embedding", "easyneg.pt", 10)]


def test_identify_fills_in_what_civitai_knows(civitai, model_bytes, models, capsys):
    from colab_sd.library import read_sidecar

    civitai.add_version(model_id=5000, version_id=5001, model_name="Dreamy", model_type="LORA", base_model="SDXL 1.0",
                        version_name="v1", trained_words=["dreamy light"],
                        files=[FakeFile(5101, "dreamy.safetensors", model_bytes["lora_xl"])])
    (models / "lora").mkdir()
    known = models / "lora" / "renamed_by_hand.safetensors"
    known.write_bytes(model_bytes["lora_xl"])
    unknown = models / "lora" / "mine.safetensors"
    unknown.write_bytes(model_bytes["lora"])
    assert cli.main(["models", "--dir", str(models), "--identify", "--json"]) == 0
    out, err = capsys.readouterr()
    data = {d["name"]: d for d in json.loads(out)}
    assert data["renamed_by_hand.safetensors"]["trigger_words"] == ["dreamy light"]
    assert data["renamed_by_hand.safetensors"]["base_model"] == "SDXL 1.0"
    assert read_sidecar(known)["civitai"]["version_id"] == 5001
    assert data["mine.safetensors"]["trigger_words"] == [] and read_sidecar(unknown)["sha256"]
    assert "identified: lora/renamed_by_hand.safetensors = CivitAI 'Dreamy' version 'v1'" in err
    assert "not on CivitAI: lora/mine.safetensors" in err
    asked = civitai.hits("/api/v1/model-versions/by-hash/")
    assert len(asked) == 2
    known_sha = read_sidecar(known)["sha256"].upper()
    assert cli.main(["models", "--dir", str(models), "--identify"]) == 0  # known ones are not asked again
    again = civitai.hits("/api/v1/model-versions/by-hash/")[len(asked):]
    assert not [r for r in again if r["path"].upper().endswith(known_sha)]
