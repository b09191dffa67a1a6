"""ComfyUI graphs → generation settings, best effort (ComfyUI nodes.py `SaveImage` writes them as PNG text).

`prompt` is the API graph {node_id: {class_type, inputs: {name: literal | [source_id, output_index]}}}; `workflow`
is the UI graph {nodes: [{id, type, inputs: [{name, link}], widgets_values}], links: [[id, from, slot, to, slot,
type]]}, turned here into the API form for the node types whose widget order is known. The walk follows what
CivitAI's reader follows (civitai src/utils/metadata/comfy.metadata.ts): the sampler (KSampler, KSamplerAdvanced,
preferring the one fed by an empty latent), its positive/negative inputs down to CLIPTextEncode texts, its model
input through LoRA loaders to the checkpoint loader, the clip chain for CLIPSetLastLayer, the latent for the size.
"""
from __future__ import annotations

import json
from typing import Optional

MAX_NODES = 20000
MAX_DEPTH = 64
MAX_VISITS = 10000

SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
EMPTY_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo", "EmptyMochiLatentVideo")
CHECKPOINT_LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "CheckpointLoader": "ckpt_name",
                      "ImageOnlyCheckpointLoader": "ckpt_name", "UNETLoader": "unet_name",
                      "UnetLoaderGGUF": "unet_name", "CheckpointLoader|pysssss": "ckpt_name"}
LORA_LOADERS = ("LoraLoader", "LoraLoaderModelOnly", "LoraLoader|pysssss")
# ComfyUI's sampler / scheduler names → A1111's (comfy/samplers.py KSAMPLER_NAMES, SCHEDULER_NAMES)
SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
                 "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
                 "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M",
                 "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE", "ddim": "DDIM", "uni_pc": "UniPC",
                 "lcm": "LCM", "ddpm": "DDPM", "heunpp2": "Heun++ 2"}
SCHEDULER_NAMES = {"normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
                   "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Beta", "kl_optimal": "KL Optimal",
                   "linear_quadratic": "Linear Quadratic"}
# Widget order of the UI graph's common nodes (ComfyUI nodes.py INPUT_TYPES, plus the seed's "control" widget).
WIDGETS = {
    "KSampler": ["seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": ["add_noise", "noise_seed", None, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"],
    "CLIPTextEncode": ["text"], "CLIPTextEncodeSDXL": ["width", "height", "crop_w", "crop_h", "target_width",
                                                       "target_height", "text_g", "text_l"],
    "CheckpointLoaderSimple": ["ckpt_name"], "UNETLoader": ["unet_name", "weight_dtype"],
    "EmptyLatentImage": ["width", "height", "batch_size"], "EmptySD3LatentImage": ["width", "height", "batch_size"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"],
    "CLIPSetLastLayer": ["stop_at_clip_layer"], "VAELoader": ["vae_name"],
    "KSamplerSelect": ["sampler_name"], "BasicScheduler": ["scheduler", "steps", "denoise"],
    "RandomNoise": ["noise_seed", None], "CFGGuider": ["cfg"], "FluxGuidance": ["guidance"],
    "LatentUpscaleBy": ["upscale_method", "scale_by"], "LatentUpscale": ["upscale_method", "width", "height", "crop"],
}


def parse_graph(text: str) -> Optional[dict]:
    """A JSON graph from chunk text, or None; ComfyUI writes NaN/Infinity literals, which Python's json reads."""
    try:
        graph = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return graph if isinstance(graph, dict) else None


def workflow_to_api(workflow: dict) -> dict:
    """The UI graph as an API graph: linked inputs as [source_id, slot], known widgets by name."""
    nodes = workflow.get("nodes")
    links = workflow.get("links")
    if not isinstance(nodes, list) or not isinstance(links, list):
        return {}
    by_link = {}
    for link in links[:MAX_NODES * 4]:
        if isinstance(link, list) and len(link) >= 3:
            by_link[link[0]] = [str(link[1]), link[2]]
        elif isinstance(link, dict) and "id" in link:
            by_link[link["id"]] = [str(link.get("origin_id")), link.get("origin_slot", 0)]
    api = {}
    for node in nodes[:MAX_NODES]:
        if not isinstance(node, dict) or "id" not in node:
            continue
        kind = str(node.get("type", ""))
        inputs = {}
        values = node.get("widgets_values")
        if isinstance(values, list):
            for name, value in zip(WIDGETS.get(kind, []), values):
                if name:
                    inputs[name] = value
        for item in node.get("inputs") or []:
            if isinstance(item, dict) and item.get("link") in by_link:
                inputs[str(item.get("name"))] = by_link[item["link"]]
        api[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return api


class _Walker:
    def __init__(self, graph: dict):
        self.nodes = {str(k): v for k, v in list(graph.items())[:MAX_NODES]
                      if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}
        self.visits = MAX_VISITS  # combine nodes can share inputs: a hostile graph would fan out exponentially

    def node(self, ref) -> Optional[dict]:
        return self.nodes.get(str(ref[0])) if _is_link(ref) else None

    def literal(self, value, depth: int = 0):
        """A literal input, following a link into a primitive / seed / string node's own value."""
        while _is_link(value) and depth < MAX_DEPTH:
            source = self.node(value) or {}
            inputs = source.get("inputs", {})
            value = next((inputs[k] for k in ("value", "seed", "noise_seed", "int", "float", "text", "string")
                          if k in inputs), None)
            depth += 1
        return None if _is_link(value) else value

    def text(self, ref, depth: int = 0) -> Optional[str]:
        """The prompt text that reaches a conditioning input."""
        node = self.node(ref)
        self.visits = MAX_VISITS if depth == 0 else self.visits - 1
        if node is None or depth > MAX_DEPTH or self.visits < 0:
            return None
        kind, inputs = node.get("class_type", ""), node["inputs"]
        for key in ("text", "text_g", "prompt"):
            value = self.literal(inputs.get(key))
            if isinstance(value, str):
                return value
        if kind in ("ConditioningCombine", "ConditioningConcat"):
            parts = [self.text(inputs.get(k), depth + 1)
                     for k in ("conditioning_1", "conditioning_to", "conditioning_2", "conditioning_from")]
            return ", ".join(p for p in parts if p) or None
        # ControlNetApplyAdvanced and friends pass positive/negative through by output slot.
        if "positive" in inputs and "negative" in inputs:
            return self.text(inputs["negative" if ref[1] == 1 else "positive"], depth + 1)
        for key, value in inputs.items():
            if _is_link(value) and ("conditioning" in key or key in ("positive", "negative", "cond")):
                return self.text(value, depth + 1)
        return None


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
        and isinstance(value[1], int)


def read_graph(graph: dict) -> Optional[dict]:
    """Settings from an API graph: prompt, negative_prompt, seed, steps, cfg, sampler, schedule, width, height,
    denoise, model, loras [{name, weight}], vae, clip_skip; `extra` holds the sampler's other inputs. None when the
    graph has no sampler node."""
    walker = _Walker(graph)
    samplers = [(k, n) for k, n in walker.nodes.items() if n.get("class_type") in SAMPLERS]
    if not samplers:
        return None
    samplers.sort(key=lambda item: (not _fed_by_empty_latent(walker, item[1]), _node_order(item[0])))
    inputs = _flatten(walker, samplers[0][1]["inputs"])
    out: dict = {"extra": {}}
    out["prompt"] = walker.text(inputs.get("positive")) or ""
    out["negative_prompt"] = walker.text(inputs.get("negative")) or ""
    out["seed"] = walker.literal(inputs.get("seed", inputs.get("noise_seed")))
    out["steps"] = walker.literal(inputs.get("steps"))
    out["cfg"] = walker.literal(inputs.get("cfg"))
    sampler_name = walker.literal(inputs.get("sampler_name"))
    scheduler = walker.literal(inputs.get("scheduler"))
    out["sampler"] = SAMPLER_NAMES.get(str(sampler_name), sampler_name)
    out["schedule"] = SCHEDULER_NAMES.get(str(scheduler), scheduler)
    out["denoise"] = walker.literal(inputs.get("denoise"))
    for key, value in inputs.items():
        if key not in ("positive", "negative", "model", "latent_image", "seed", "noise_seed", "steps", "cfg",
                       "sampler_name", "scheduler", "denoise") and not _is_link(value):
            out["extra"][f"comfy {key}"] = value
    _model_chain(walker, inputs.get("model"), out)
    _size(walker, inputs.get("latent_image"), out)
    _clip_skip(walker, inputs.get("positive"), out)
    vae = next((n["inputs"].get("vae_name") for n in walker.nodes.values() if n.get("class_type") == "VAELoader"), None)
    out["vae"] = vae if isinstance(vae, str) else None
    return out


def _flatten(walker: _Walker, inputs: dict) -> dict:
    """SamplerCustom(Advanced) (Flux, SD3 workflows) spread a KSampler's inputs over noise, guider, sampler and
    sigmas nodes (RandomNoise, CFGGuider / BasicGuider, KSamplerSelect, BasicScheduler): gather them back."""
    parts = {k: (walker.node(inputs.get(k)) or {}).get("inputs", {}) for k in ("noise", "guider", "sampler", "sigmas")}
    noise, guider, sampler, sigmas = (parts[k] for k in ("noise", "guider", "sampler", "sigmas"))
    flat = {k: v for k, v in inputs.items() if k not in parts}
    for key, value in (("noise_seed", noise.get("noise_seed")), ("cfg", guider.get("cfg")),
                       ("positive", guider.get("positive", guider.get("conditioning"))),
                       ("negative", guider.get("negative")), ("model", guider.get("model", sigmas.get("model"))),
                       ("sampler_name", sampler.get("sampler_name")), ("scheduler", sigmas.get("scheduler")),
                       ("steps", sigmas.get("steps")), ("denoise", sigmas.get("denoise"))):
        if value is not None and key not in flat:
            flat[key] = value
    return flat


def _node_order(key: str):
    return (0, int(key)) if key.isdigit() else (1, key)


def _fed_by_empty_latent(walker: _Walker, node: dict) -> bool:
    source = walker.node(node["inputs"].get("latent_image"))
    return bool(source) and source.get("class_type") in EMPTY_LATENTS


def _model_chain(walker: _Walker, ref, out: dict) -> None:
    out["loras"], out["model"] = [], None
    for _ in range(MAX_DEPTH):
        node = walker.node(ref)
        if node is None:
            break
        kind, inputs = node.get("class_type", ""), node["inputs"]
        if kind in CHECKPOINT_LOADERS:
            name = walker.literal(inputs.get(CHECKPOINT_LOADERS[kind]))
            out["model"] = name if isinstance(name, str) else None
            break
        if kind in LORA_LOADERS:
            name = walker.literal(inputs.get("lora_name"))
            if isinstance(name, str):
                out["loras"].insert(0, {"name": name, "weight": walker.literal(inputs.get("strength_model"))})
        ref = inputs.get("model")


def _size(walker: _Walker, ref, out: dict) -> None:
    out["width"] = out["height"] = None
    for _ in range(MAX_DEPTH):
        node = walker.node(ref)
        if node is None:
            return
        inputs = node["inputs"]
        if node.get("class_type") in EMPTY_LATENTS or ("width" in inputs and "height" in inputs
                                                         and "samples" not in inputs):
            out["width"], out["height"] = walker.literal(inputs.get("width")), walker.literal(inputs.get("height"))
            return
        ref = inputs.get("samples") or inputs.get("latent_image") or inputs.get("latent")


def _clip_skip(walker: _Walker, ref, out: dict) -> None:
    """CLIPSetLastLayer stop_at_clip_layer -N on the positive prompt's clip chain = A1111's Clip skip N."""
    out["clip_skip"] = None
    encoder = walker.node(ref)
    ref = encoder["inputs"].get("clip") if encoder else None
    for _ in range(MAX_DEPTH):
        node = walker.node(ref)
        if node is None:
            return
        if node.get("class_type") == "CLIPSetLastLayer":
            layer = walker.literal(node["inputs"].get("stop_at_clip_layer"))
            if isinstance(layer, int) and layer < 0:
                out["clip_skip"] = -layer
            return
        ref = node["inputs"].get("clip")
