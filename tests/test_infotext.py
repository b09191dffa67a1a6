"""colab_sd.infotext: A1111 text written and read back, and real image files of every kind written here and read.

No torch: PNGs are written by Pillow (tEXt / iTXt / zTXt as it chooses) or chunk by chunk for damaged cases; JPEG and
WebP carry their text in EXIF UserComment built with Pillow's Image.Exif in piexif's layout (A1111's writer).
"""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import colab_sd
from colab_sd.errors import ColabSDError, InputError
from colab_sd.infotext import (build_parameters, from_civitai_meta, from_text, parse_parameters, read_parameters,
                               split_pairs)
from colab_sd.infotext.files import decode_user_comment

# The reference's conformance case 11 (a1111-parity.md §8).
CASE_11 = (
    "a (cat:1.2), masterpiece <lora:detail:0.8>\nsecond line\nNegative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 123, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, "
    "Hires steps: 10, Hires upscaler: Latent, Lora hashes: \"detail: 0123456789ab, style: ba9876543210\", "
    "Hires prompt: \"a cat, hires\", Version: v1.10.1")


# ---------------------------------------------------------------------------------------------- helpers


def png_bytes(text_chunks=(), size=(8, 8)) -> bytes:
    """A real PNG from Pillow with raw chunks (type, data) spliced in right after IHDR."""
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    data = buf.getvalue()
    extra = b"".join(chunk(kind, body) for kind, body in text_chunks)
    return data[:33] + extra + data[33:]


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def save_png(path, **texts):
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    Image.new("RGB", (16, 16), (10, 120, 200)).save(path, format="PNG", pnginfo=info)
    return path


def a1111_user_comment(text: str, little_endian: bool = False) -> bytes:
    """piexif.helper.UserComment.dump(text, encoding="unicode"), as A1111 calls it."""
    return b"UNICODE\0" + text.encode("utf-16-le" if little_endian else "utf-16-be")


def save_with_exif(path, fmt: str, comment: bytes):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    Image.new("RGB", (16, 16), (90, 90, 20)).save(path, format=fmt, exif=exif.tobytes())
    return path


def png_chunk_types(path) -> list[bytes]:
    data, at, out = path.read_bytes(), 8, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        out.append(kind)
        at += 12 + length
    return out


# ---------------------------------------------------------------------------------------------- A1111 text


def test_conformance_case_11_reads_and_writes_back_identically():
    fields = parse_parameters(CASE_11)
    assert fields["prompt"] == "a (cat:1.2), masterpiece <lora:detail:0.8>\nsecond line"
    assert fields["negative_prompt"] == "blurry, lowres"
    assert fields["Size"] == "512x768" and fields["Lora hashes"] == "detail: 0123456789ab, style: ba9876543210"
    assert fields["Hires prompt"] == "a cat, hires"
    assert all(isinstance(v, str) for v in fields.values())
    prompt, negative = fields.pop("prompt"), fields.pop("negative_prompt")
    assert build_parameters(prompt, negative, fields) == CASE_11


def test_structured_fields_use_the_request_names():
    result = from_text(CASE_11)
    assert (result["steps"], result["sampler"], result["schedule"], result["cfg"], result["seed"]) == \
        (20, "DPM++ 2M", "Karras", 7.0, 123)
    assert (result["width"], result["height"], result["clip_skip"], result["denoising_strength"]) == (512, 768, 2, 0.45)
    assert (result["model"], result["model_hash"], result["version"]) == \
        ("v1-5-pruned-emaonly", "6ce0161689", "v1.10.1")
    assert (result["hires_scale"], result["hires_steps"], result["hires_upscaler"], result["hires_prompt"]) == \
        (2.0, 10, "Latent", "a cat, hires")
    assert result["loras"] == [{"name": "detail", "weight": 0.8, "hash": "0123456789ab"},
                               {"name": "style", "weight": None, "hash": "ba9876543210"}]
    assert result["source"] == "a1111" and result["extra"] == {} and result["warnings"] == []
    assert result["parameters"]["Seed"] == "123"


def test_conformance_case_12_quoting_and_the_three_pair_rule():
    text = build_parameters("p", "", {"Model": "x:y", "CFG scale": 1.5, "Steps": 20})
    assert text == 'p\nModel: "x:y", CFG scale: 1.5, Steps: 20'
    two_pairs = "p\nSteps: 20, Sampler: Euler"
    assert parse_parameters(two_pairs) == {"prompt": two_pairs, "negative_prompt": ""}


def test_conformance_case_13_civitai_resources_is_read_whole():
    text = ('a lantern\nSteps: 28, Sampler: Euler a, CFG scale: 5, Seed: 7, '
            'Civitai resources: [{"type":"checkpoint","modelVersionId":1},{"type":"lora","weight":0.8,'
            '"modelVersionId":77001,"modelName":"Paper, Lantern"}], Civitai metadata: {"remixOfId":5}')
    result = from_text(text)
    assert result["civitai_resources"] == [{"type": "checkpoint", "modelVersionId": 1},
                                           {"type": "lora", "weight": 0.8, "modelVersionId": 77001,
                                            "modelName": "Paper, Lantern"}]
    assert result["extra"] == {"Civitai metadata": {"remixOfId": 5}}
    assert result["source"] == "civitai"


def test_values_with_quotes_commas_colons_and_newlines_round_trip():
    params = {"Steps": 4, "Model": 'my "best", model: v2', "Hires prompt": "line one\nline two, more",
              "Template": 'say "hi"', "Note": "plain"}
    text = build_parameters("a cat, (red:1.2)", "blurry, bad", params)
    fields = parse_parameters(text)
    assert {k: fields[k] for k in params} == {k: str(v) for k, v in params.items()}
    assert from_text(text)["extra"] == {"Template": 'say "hi"', "Note": "plain"}  # unknown keys kept


def test_old_sampler_names_carry_the_schedule():
    result = from_text("p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert (result["sampler"], result["schedule"]) == ("DPM++ 2M", "Karras")
    result = from_text("p\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1")
    assert (result["sampler"], result["schedule"]) == ("DDIM", None)


def test_embeddings_hashes_and_civitai_hashes():
    text = ('p <lora:film:0.6>\nSteps: 20, Sampler: Euler, Seed: 3, TI hashes: "easyneg: c74b4e810b03", '
            'Hashes: {"model": "0x9F8E7D6C5B", "lora:film": "AB12CD34EF", "embed:easyneg": "C74B4E810B"}')
    result = from_text(text)
    assert result["model_hash"] == "9f8e7d6c5b"
    assert result["loras"] == [{"name": "film", "weight": 0.6, "hash": "ab12cd34ef"}]
    assert result["embeddings"] == [{"name": "easyneg", "hash": "c74b4e810b03"}]


def test_numbers_that_are_not_numbers_are_warned_about_not_raised():
    result = from_text("p\nSteps: many, Seed: 12x, Size: big, CFG scale: 7")
    assert result["steps"] is None and result["seed"] is None and result["width"] is None
    assert len(result["warnings"]) == 3 and result["cfg"] == 7.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("line", [
    "a" * 300_000,                        # fault A10: a long line with no ':' (A1111's regex: quadratic)
    "a b" * 100_000,
    "ab:" * 100_000,
    'Key: "' * 50_000,
    "Key: [" * 50_000,
    "Key: [x, " * 30_000 + "]" * 30_000,
    ":" * 300_000,
], ids=["no-colon", "words", "short-keys", "open-quotes", "open-brackets", "nested-brackets", "colons"])
def test_hostile_lines_parse_in_linear_time(line):
    """Each would keep A1111's regex busy for hours; the linear reader answers (pytest-timeout guards it)."""
    fields = parse_parameters(line)
    assert fields["prompt"] == line or len(fields) > 2


def test_the_linear_reader_finds_what_a1111s_regex_finds():
    import random
    import re

    re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # A1111 infotext_utils.py

    def a1111(line):
        out = []
        for key, value in re_param.findall(line):
            decoded = value
            if value[:1] == '"' and value[-1:] == '"':
                try:
                    decoded = json.loads(value)
                except ValueError:
                    pass
            out.append((key.strip(), value.rstrip() if decoded is value else decoded))
        return out

    rng = random.Random(5)
    for _ in range(5000):
        line = "".join(rng.choice('ab :,"\\- /x1') for _ in range(rng.randint(0, 40)))
        assert split_pairs(line) == a1111(line), line


def test_text_over_the_limit_is_one_line():
    with pytest.raises(InputError, match="not read"):
        parse_parameters("x" * (2 << 20))


# ---------------------------------------------------------------------------------------------- PNG files


def test_png_text_chunks_tEXt_iTXt_and_zTXt(tmp_path):
    ascii_png = save_png(tmp_path / "a.png", parameters=CASE_11, Software="test")
    cat_png = save_png(tmp_path / "b.png", parameters=CASE_11.replace("masterpiece", "猫"))
    assert b"tEXt" in png_chunk_types(ascii_png) and b"iTXt" in png_chunk_types(cat_png)
    result = read_parameters(ascii_png)
    assert result["where"] == "png:parameters" and result["text"] == CASE_11
    assert result["chunks"] == {"Software": "test"}
    assert "猫" in read_parameters(cat_png)["prompt"]

    info = PngInfo()
    info.add_text("parameters", CASE_11, zip=True)  # zTXt
    Image.new("RGB", (8, 8)).save(tmp_path / "z.png", pnginfo=info)
    assert b"zTXt" in png_chunk_types(tmp_path / "z.png")
    assert read_parameters(tmp_path / "z.png")["seed"] == 123
    compressed_itxt = b"parameters\0\1\0\0\0" + zlib.compress(("猫 " + CASE_11).encode())
    (tmp_path / "i.png").write_bytes(png_bytes([(b"iTXt", compressed_itxt)]))
    assert read_parameters(tmp_path / "i.png")["prompt"].startswith("猫 a (cat")


def test_text_after_the_image_data_and_pil_images_and_bytes(tmp_path):
    data = png_bytes()
    late = data[:-12] + chunk(b"tEXt", b"parameters\0" + CASE_11.encode()) + data[-12:]
    (tmp_path / "late.png").write_bytes(late)
    assert read_parameters(tmp_path / "late.png")["steps"] == 20
    assert read_parameters(late)["steps"] == 20
    with Image.open(tmp_path / "late.png") as img:
        assert colab_sd.read_parameters(img)["seed"] == 123
    made = Image.new("RGB", (8, 8))
    made.info["parameters"] = CASE_11  # what colab_sd's engine puts on the images it returns
    assert read_parameters(made)["model"] == "v1-5-pruned-emaonly"


def test_ztxt_past_pils_limit_is_read_and_a_bomb_is_skipped(tmp_path):
    # 3 MB of workflow JSON: Pillow refuses zTXt over 1 MB with a bare ValueError; we read it.
    graph = comfy_graph()
    graph["99"] = {"class_type": "Note", "inputs": {"text": "x" * 3_000_000}}
    body = b"prompt\0\0" + zlib.compress(json.dumps(graph).encode())
    (tmp_path / "big.png").write_bytes(png_bytes([(b"zTXt", body)]))
    with pytest.raises(ValueError):
        Image.open(tmp_path / "big.png").load()
    assert read_parameters(tmp_path / "big.png")["prompt"] == "a red fox in snow"
    # 40 MB of spaces in a 40 KB chunk: skipped with a warning, the real parameters still read.
    bomb = b"workflow\0\0" + zlib.compress(b" " * (40 << 20))
    (tmp_path / "bomb.png").write_bytes(png_bytes([(b"zTXt", bomb),
                                                    (b"tEXt", b"parameters\0" + CASE_11.encode())]))
    result = read_parameters(tmp_path / "bomb.png")
    assert result["seed"] == 123 and "inflates past" in result["warnings"][0]


def test_a_50_mb_text_chunk_is_skipped_not_read(tmp_path):
    huge = b"parameters\0" + b"a" * (50 << 20)
    (tmp_path / "huge.png").write_bytes(png_bytes([(b"tEXt", huge)]))
    with pytest.raises(InputError) as err:
        read_parameters(tmp_path / "huge.png")
    assert "no generation settings" in str(err.value) and "skipped" in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_files(tmp_path):
    whole = png_bytes([(b"tEXt", b"parameters\0" + CASE_11.encode())])
    (tmp_path / "cut-in-text.png").write_bytes(whole[:60])
    with pytest.raises(InputError, match="truncated"):
        read_parameters(tmp_path / "cut-in-text.png")
    (tmp_path / "cut-in-image.png").write_bytes(whole[:-20])
    result = read_parameters(tmp_path / "cut-in-image.png")
    assert result["seed"] == 123 and "truncated" in result["warnings"][0]


@pytest.mark.parametrize("content,message", [
    (b"", "not an image"),
    (b"hello, this is text", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 50, "not an image"),  # a JPEG header and nothing after it
    (b"\x89PNG\r\n\x1a\n", "truncated"),
])
def test_bad_input_is_one_line(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ColabSDError, match=message) as err:
        read_parameters(path)
    assert "\n" not in str(err.value)


def test_missing_folder_and_wrong_type(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_parameters(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a folder"):
        read_parameters(tmp_path)
    with pytest.raises(InputError, match="not int"):
        read_parameters(42)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(InputError, match="no generation settings"):
        read_parameters(plain)


# ---------------------------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
def test_exif_user_comment_as_a1111_writes_it(tmp_path, fmt, suffix):
    text = CASE_11.replace("masterpiece", "猫 masterpiece")
    path = save_with_exif(tmp_path / f"a.{suffix}", fmt, a1111_user_comment(text))
    with Image.open(path) as img:
        stored = img.getexif().get_ifd(0x8769)[0x9286]
    assert stored[:8] == bytes.fromhex("55 4E 49 43 4F 44 45 00")  # conformance case 14
    result = read_parameters(path)
    assert result["where"] == "exif:UserComment" and result["text"] == text and result["seed"] == 123


def test_exif_user_comment_little_endian_and_other_headers():
    text = "a cat\nSteps: 5, Sampler: Euler, Seed: 9"
    assert decode_user_comment(a1111_user_comment(text, little_endian=True)) == text
    assert decode_user_comment(b"UNICODE\0\xff\xfe" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"ASCII\0\0\0" + text.encode()) == text
    assert decode_user_comment(b"\0" * 8 + text.encode()) == text
    assert decode_user_comment(text) == text


def test_civitai_jpeg_with_resources(tmp_path):
    text = ('paper lantern, papl style\nNegative prompt: blurry\nSteps: 28, CFG scale: 5, Sampler: Euler a, '
            'Seed: 42, Size: 832x1216, Clip skip: 2, Civitai resources: [{"type":"checkpoint","modelVersionId":'
            '128713,"modelName":"DreamShaper","modelVersionName":"8"},{"type":"lora","weight":0.8,'
            '"modelVersionId":77001,"modelName":"Paper Lantern"}], Civitai metadata: {}')
    result = read_parameters(save_with_exif(tmp_path / "c.jpeg", "JPEG", a1111_user_comment(text)))
    assert result["source"] == "civitai" and (result["width"], result["height"]) == (832, 1216)
    assert [r["modelVersionId"] for r in result["civitai_resources"]] == [128713, 77001]


def test_civitai_api_meta_nested_and_flat():
    meta = {"id": 31001, "meta": {"prompt": "paper lantern <lora:papl:0.7>", "negativePrompt": "blurry",
                                  "steps": 28, "cfgScale": 5, "sampler": "Euler a", "seed": 42, "clipSkip": 2,
                                  "Size": "832x1216", "Model": "dreamshaper_8", "Model hash": "9F8E7D6C5B",
                                  "hashes": {"model": "9F8E7D6C5B", "lora:papl": "0x0A1B2C3D4E"},
                                  "civitaiResources": [{"type": "lora", "weight": 0.7, "modelVersionId": 77001}],
                                  "RNG": "CPU"}}
    result = from_civitai_meta(meta)
    assert (result["steps"], result["cfg"], result["seed"], result["clip_skip"]) == (28, 5.0, 42, 2)
    assert result["model_hash"] == "9F8E7D6C5B" and result["loras"][0]["hash"] == "0a1b2c3d4e"
    assert result["civitai_resources"][0]["modelVersionId"] == 77001 and result["extra"] == {"RNG": "CPU"}
    assert from_civitai_meta(meta["meta"])["seed"] == 42


# ---------------------------------------------------------------------------------------------- ComfyUI


def comfy_graph() -> dict:
    """An SD1 txt2img API graph as ComfyUI saves it: checkpoint → LoRA → KSampler, clip skip 2."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15/dreamshaper_8.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/film.safetensors", "strength_model": 0.7,
                                                      "strength_clip": 1.0, "model": ["4", 0], "clip": ["4", 1]}},
        "11": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
        "20": {"class_type": "PrimitiveNode", "inputs": {"value": 987654321}},
        "3": {"class_type": "KSampler", "inputs": {"seed": ["20", 0], "steps": 30, "cfg": 6.5,
                                                   "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0,
                                                   "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_workflow() -> dict:
    """The same graph in the UI form (`workflow` chunk)."""
    nodes = [
        {"id": 4, "type": "CheckpointLoaderSimple", "inputs": [], "widgets_values": ["dreamshaper_8.safetensors"]},
        {"id": 6, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 3}], "widgets_values": ["a fox"]},
        {"id": 7, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 5}], "widgets_values": ["blurry"]},
        {"id": 5, "type": "EmptyLatentImage", "inputs": [], "widgets_values": [640, 448, 1]},
        {"id": 3, "type": "KSampler", "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 4},
                                                 {"name": "negative", "link": 6}, {"name": "latent_image", "link": 2}],
         "widgets_values": [1234, "fixed", 20, 8, "euler_ancestral", "normal", 1]},
    ]
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "COND"],
             [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"]]
    return {"last_node_id": 7, "last_link_id": 6, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_comfyui_prompt_and_workflow_chunks(tmp_path):
    path = save_png(tmp_path / "comfy.png", prompt=json.dumps(comfy_graph()), workflow=json.dumps(comfy_workflow()))
    result = read_parameters(path)
    assert result["source"] == "comfyui" and result["where"] == "png:prompt"
    assert (result["prompt"], result["negative_prompt"]) == ("a red fox in snow", "blurry")
    assert (result["seed"], result["steps"], result["cfg"]) == (987654321, 30, 6.5)
    assert (result["sampler"], result["schedule"], result["width"], result["height"]) == \
        ("DPM++ 2M", "Karras", 512, 768)
    assert result["model"] == "sd15/dreamshaper_8.safetensors" and result["clip_skip"] == 2
    assert result["loras"] == [{"name": "film", "weight": 0.7, "hash": None}]
    assert json.loads(result["chunks"]["workflow"]) == comfy_workflow()  # the graphs are kept, not dropped


def test_comfyui_workflow_only(tmp_path):
    path = save_png(tmp_path / "wf.png", workflow=json.dumps(comfy_workflow()))
    result = read_parameters(path)
    assert result["where"] == "png:workflow"
    assert (result["prompt"], result["negative_prompt"], result["seed"], result["steps"]) == \
        ("a fox", "blurry", 1234, 20)
    assert (result["sampler"], result["schedule"], result["width"], result["height"], result["model"]) == \
        ("Euler a", "Normal", 640, 448, "dreamshaper_8.safetensors")


def test_comfyui_sdxl_and_controlnet_and_a_graph_without_a_sampler(tmp_path):
    graph = comfy_graph()
    graph["6"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "a castle", "text_l": "a castle",
                                                                  "width": 1024, "height": 1024}}
    graph["30"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["6", 0], "negative": ["7", 0],
                                                                        "strength": 0.8}}
    graph["3"]["inputs"].update(positive=["30", 0], negative=["30", 1])
    result = read_parameters(save_png(tmp_path / "x.png", prompt=json.dumps(graph)))
    assert (result["prompt"], result["negative_prompt"]) == ("a castle", "blurry")
    only_loader = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
    with pytest.raises(InputError, match="no generation settings"):
        read_parameters(save_png(tmp_path / "y.png", prompt=json.dumps(only_loader)))
    with pytest.raises(InputError, match="no generation settings"):
        read_parameters(save_png(tmp_path / "z.png", prompt="{not json"))


def test_reading_imports_no_torch():
    code = ("import sys, colab_sd; from colab_sd.infotext import read_parameters, from_text; "
            "from_text('a\\nSteps: 1, Seed: 2, CFG scale: 3'); "
            "print(sorted(m for m in ('torch', 'diffusers', 'ipywidgets', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def flux_graph() -> dict:
    """A Flux-style API graph: SamplerCustomAdvanced with its noise / guider / sampler / sigmas nodes."""
    return {
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a neon alley at night", "clip": ["11", 0]}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 2024}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1,
                                                          "model": ["12", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                 "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                 "latent_image": ["27", 0]}},
    }


def test_comfyui_sampler_custom_advanced_and_webp_exif(tmp_path):
    path = save_png(tmp_path / "flux.png", prompt=json.dumps(flux_graph()))
    result = read_parameters(path)
    assert (result["prompt"], result["seed"], result["steps"], result["sampler"], result["schedule"]) == \
        ("a neon alley at night", 2024, 20, "Euler", "Simple")
    assert (result["width"], result["height"], result["model"]) == (832, 1216, "flux1-dev.safetensors")
    # ComfyUI's WebP saver: "Prompt:{…}" in EXIF Make, "Workflow:{…}" in ImageDescription.
    exif = Image.Exif()
    exif[0x010F] = "Prompt:" + json.dumps(comfy_graph())
    exif[0x010E] = "Workflow:" + json.dumps(comfy_workflow())
    Image.new("RGB", (16, 16)).save(tmp_path / "comfy.webp", format="WEBP", exif=exif.tobytes())
    result = read_parameters(tmp_path / "comfy.webp")
    assert (result["where"], result["prompt"], result["seed"]) == ("webp:prompt", "a red fox in snow", 987654321)


@pytest.mark.timeout(30)
def test_comfyui_graphs_that_fan_out_or_loop_are_walked_in_bounded_time(tmp_path):
    graph = comfy_graph()
    for i in range(60):  # each combine node takes the next one twice: 2**60 paths if walked naively
        graph[f"c{i}"] = {"class_type": "ConditioningCombine",
                          "inputs": {"conditioning_1": [f"c{i + 1}", 0], "conditioning_2": [f"c{i + 1}", 0]}}
    graph["c60"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "deep"}}
    graph["3"]["inputs"]["positive"] = ["c0", 0]
    graph["loop"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "x.safetensors", "model": ["loop", 0]}}
    graph["3"]["inputs"]["model"] = ["loop", 0]
    result = read_parameters(save_png(tmp_path / "fan.png", prompt=json.dumps(graph)))
    assert result["prompt"].startswith("deep") and result["negative_prompt"] == "blurry"


@pytest.mark.timeout(60)
def test_a_png_of_endless_tiny_chunks_is_read_only_so_far(tmp_path):
    from colab_sd.infotext.files import MAX_CHUNKS

    (tmp_path / "many.png").write_bytes(png_bytes([(b"tEXt", b"parameters\0" + CASE_11.encode())]
                                                  + [(b"zzZz", b"")] * (MAX_CHUNKS + 10)))
    result = read_parameters(tmp_path / "many.png")
    assert result["seed"] == 123 and "the rest of the file was not read" in result["warnings"][0]
