"""Generate: model, VAE, LoRAs, prompts, sampler, size, seed; a step bar with a preview; an inline gallery.

Generation runs in a worker thread while the button callback pumps its step events into the bar on
the main thread (see pump.py). Colab's stop button sets the request's `cancel` event, which stops
the run after the current step. torch and diffusers are imported only when Generate is clicked.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..errors import ColabSDError
from ..events import Completed, Info, Progress, StepProgress
from ..library import ModelEntry
from ..tokens import redact
from . import family_controls
from . import format as fmt
from . import model_needs
from . import settings as saved
from .html import message
from .pump import pump
from .batch_view import BatchView
from .reuse_box import ReuseBox
from .second_pass import SecondPassControls

log = logging.getLogger("colab_sd.ui")

# Sizes people use per family (A1111 / CivitAI habits); the first is the default.
SIZE_PRESETS = {
    "sd1": ["512×512", "512×768", "768×512", "768×768"],
    "sd2": ["768×768", "512×512", "768×1024", "1024×768"],
    "sdxl": ["1024×1024", "832×1216", "1216×832", "896×1152", "1152×896", "768×1344", "1344×768"],
}
CUSTOM = "Custom"
AUTO_VAE = "(the model's own)"
GALLERY_LIMIT = 24  # newest first; older results stay on disk
THUMB = 320
PREVIEW_EVERY = 5


def family_of(entry: Optional[ModelEntry]) -> str:
    """"sd1", "sd2" or "sdxl" for the size presets, from the sidecar or the file's header (cheap, no torch)."""
    if entry is None:
        return "sd1"
    text = str(entry.meta.get("family") or entry.meta.get("base_model") or "").lower()
    if not text:
        try:
            from ..probe import inspect

            text = inspect(entry.path).family or ""
        except Exception:  # an unreadable header only costs the presets
            log.debug("probe failed for %s", entry.path, exc_info=True)
    if any(word in text for word in ("xl", "pony", "illustrious", "noob")):
        return "sdxl"
    if "2" in text.replace("sd1", "").replace("1.5", "") and "sd" in text.replace(" ", ""):
        return "sd2"
    return "sd1"


def png_bytes(image, max_side: Optional[int] = None) -> bytes:
    """A PIL image as PNG bytes for an Image widget (thumbnailed to keep the notebook light)."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


PICK_LORA = "(choose a LoRA to add)"


class LoraRow:
    """One LoRA: its name, a weight slider, its trigger words (click: add to the prompt) and a remove button."""

    def __init__(self, entry: ModelEntry, weight: float, add_words: Callable[[str], None],
                 remove: Callable[["LoraRow"], None]):
        self.entry = entry
        self.name = entry.stem
        self.weight = widgets.FloatSlider(value=weight, min=-1.0, max=2.0, step=0.05, description=self.name,
                                          style={"description_width": "initial"}, readout_format=".2f",
                                          layout=widgets.Layout(width="420px"))
        self.remove_button = widgets.Button(description="", icon="times", tooltip="remove this LoRA",
                                            layout=widgets.Layout(width="36px"))
        self.remove_button.on_click(lambda _: remove(self))
        self.word_buttons = []
        for word in entry.trigger_words:
            button = widgets.Button(description=word, tooltip="add to the prompt", layout=widgets.Layout(width="auto"))
            button.on_click(lambda _, w=word: add_words(w))
            self.word_buttons.append(button)
        self.widget = widgets.HBox([self.weight, self.remove_button] + self.word_buttons)


class GalleryItem:
    """One image: a thumbnail, its parameters text and where it was saved."""

    def __init__(self, image, parameters: str, path: Optional[Path]):
        self.path = path
        self.source_image = image  # full size, for "Send to img2img" / "Upscale"
        self.parameters = parameters
        self.image = widgets.Image(value=png_bytes(image, 512), format="png",
                                   layout=widgets.Layout(max_width=f"{THUMB}px", height="auto"))
        saved_line = message(f"saved: {path}" if path else "not saved", "ok" if path else "muted")
        # Wrap at spaces only (a notebook's <pre> may break anywhere, cutting numbers and hashes in two).
        self.text = widgets.HTML(f"<pre style='white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;"
                                 f"font-size:12px;margin:0'>"
                                 f"{_escape(parameters)}</pre>{saved_line}")
        self.widget = widgets.HBox([self.image, widgets.Box([self.text], layout=widgets.Layout(width="60%"))],
                                   # flex-start: a small image keeps its shape instead of stretching to the text's height
                                   layout=widgets.Layout(margin="0 0 8px 0", align_items="flex-start"))


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


class GeneratePanel:
    """All the Generate widgets; `set_library(entries)` fills the choices, `start()` runs a generation."""

    def __init__(self, models_dir, outputs_dir=None, generate: Optional[Callable[..., Any]] = None, tokens=None):
        from ..generation.samplers import DEFAULT_SAMPLER, DEFAULT_SCHEDULE, SAMPLERS, SCHEDULES

        self.tokens = tokens  # the app's TokenStore: a token typed in the Tokens panel reaches Hub models too
        self.models_dir = Path(models_dir)
        self.outputs_dir = Path(outputs_dir) if outputs_dir else None
        self._generate = generate
        self.entries: list[ModelEntry] = []
        self.lora_rows: list[LoraRow] = []
        self.gallery_items: list[GalleryItem] = []
        self.last_seed: Optional[int] = None
        self.results: list[Any] = []
        label = {"description_width": "90px"}

        self.model = widgets.Dropdown(options=[], description="Model", style=label, layout=widgets.Layout(width="520px"))
        self.vae = widgets.Dropdown(options=[AUTO_VAE], value=AUTO_VAE, description="VAE", style=label,
                                    layout=widgets.Layout(width="520px"))
        # Nothing is shown picked that is not applied: choosing a LoRA adds its row (weight, remove) at once.
        self.lora_choice = widgets.Dropdown(options=[(PICK_LORA, None)], value=None, description="LoRA",
                                            style=label, layout=widgets.Layout(width="420px"))
        self.loras_box = widgets.VBox()
        self.needs = widgets.HTML()  # a newer family's encoders / VAE: in the library, or fetched (how big)
        self.embeddings_hint = widgets.HTML()
        self.prompt = widgets.Textarea(placeholder="a photo of a cat, high quality", description="Prompt",
                                       style=label, layout=widgets.Layout(width="100%", height="70px"))
        self.negative = widgets.Textarea(placeholder="blurry, low quality", description="Negative",
                                         style=label, layout=widgets.Layout(width="100%", height="50px"))
        self.sampler = widgets.Dropdown(options=SAMPLERS, value=DEFAULT_SAMPLER, description="Sampler", style=label)
        self.schedule = widgets.Dropdown(options=SCHEDULES, value=DEFAULT_SCHEDULE, description="Schedule", style=label)
        self.steps = widgets.IntSlider(value=25, min=1, max=150, description="Steps", style=label)
        self.cfg = widgets.FloatSlider(value=7.0, min=1.0, max=20.0, step=0.5, description="CFG", style=label)
        self.clip_skip = widgets.BoundedIntText(value=1, min=1, max=12, description="Clip skip", style=label,
                                                layout=widgets.Layout(width="180px"))
        self.size = widgets.Dropdown(options=SIZE_PRESETS["sd1"] + [CUSTOM], value=SIZE_PRESETS["sd1"][0],
                                     description="Size", style=label)
        self.width = widgets.BoundedIntText(value=512, min=64, max=4096, step=8, description="Width", style=label,
                                            layout=widgets.Layout(width="180px"))
        self.height = widgets.BoundedIntText(value=512, min=64, max=4096, step=8, description="Height", style=label,
                                             layout=widgets.Layout(width="180px"))
        self.seed = widgets.IntText(value=-1, description="Seed", style=label, layout=widgets.Layout(width="260px"))
        self.random_seed = widgets.Button(description="Random", icon="random", tooltip="a new seed each time (-1)")
        self.reuse_seed = widgets.Button(description="Reuse last", icon="repeat", tooltip="the seed of the last image")
        self.batch = widgets.IntSlider(value=1, min=1, max=8, description="Batch", style=label)
        # The button and bar keep their size; a long status line wraps beside them instead of squeezing them.
        self.button = widgets.Button(description="Generate", button_style="success", icon="paint-brush",
                                     layout=widgets.Layout(flex="0 0 auto", min_width="120px"))
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                         layout=widgets.Layout(width="320px", flex="0 0 auto"))
        self.status = widgets.HTML(layout=widgets.Layout(flex="1 1 0", min_width="0"))
        self.preview = widgets.Image(format="png", layout=widgets.Layout(max_width="192px", height="auto"))
        self.preview_box = widgets.Box([], layout=widgets.Layout())
        self.gallery = widgets.VBox()

        self.model.observe(self._model_changed, names="value")
        self.sampler.observe(self._sampler_changed, names="value")
        self.size.observe(self._size_changed, names="value")
        self.lora_choice.observe(self._lora_picked, names="value")
        self.random_seed.on_click(lambda _: setattr(self.seed, "value", -1))
        self.reuse_seed.on_click(self.reuse_last_seed)
        self.button.on_click(self.start)

        hint = widgets.HTML(message("LoRAs also work in the prompt as <lora:name:0.8>. Press the cell's stop button (■) "
                                    "to stop after the current step."))
        self.reuse = ReuseBox(self)  # an image's settings → these widgets
        self.second = SecondPassControls(self)  # hires fix, img2img / inpaint, gallery actions
        self.batch_view = BatchView(self)  # these settings × prompts × seeds over every GPU
        self.widget = widgets.VBox([
            self.reuse.widget,
            self.model, self.needs, self.vae, self.lora_choice, self.loras_box, self.embeddings_hint,
            self.prompt, self.negative,
            widgets.HBox([self.sampler, self.schedule]), widgets.HBox([self.steps, self.cfg, self.clip_skip]),
            widgets.HBox([self.size, self.width, self.height]),
            widgets.HBox([self.seed, self.random_seed, self.reuse_seed]), self.batch, self.second.widget,
            widgets.HBox([self.button, self.bar, self.status]), hint, self.preview_box, self.batch_view.widget,
            self.gallery,
        ])
        self._size_changed()
        self._sampler_changed()
        self._restored = saved.load(self.models_dir)

    # -- choices from the library --------------------------------------------------------------------

    def set_library(self, entries: list[ModelEntry]) -> None:
        """Refill the model / VAE / LoRA choices, keeping the current (or last saved) picks."""
        self.entries = list(entries)
        checkpoints = [e.name for e in entries if e.kind == "checkpoint"]
        current = self.model.value or self._restored.get("model")
        self.model.options = checkpoints
        if current in checkpoints:
            self.model.value = current
        elif checkpoints:
            self.model.value = checkpoints[0]
        vae_current = self.vae.value if self.vae.value != AUTO_VAE else self._restored.get("vae")
        vaes = [e.name for e in entries if e.kind == "vae"]
        self.vae.options = [AUTO_VAE] + vaes
        self.vae.value = vae_current if vae_current in vaes else AUTO_VAE
        loras = [e.name for e in entries if e.kind == "lora"]
        self.lora_choice.options = [(PICK_LORA, None)] + [(name, name) for name in loras]
        self.lora_choice.value = None
        embeddings = [e.stem for e in entries if e.kind == "embedding"]
        self.embeddings_hint.value = message(
            "Embeddings: write their name in a prompt: " + ", ".join(embeddings) if embeddings
            else "Embeddings: none yet (download them with kind 'embedding', then write their name in a prompt).")
        if self._restored:
            self._apply_saved(self._restored)
            self._restored = {}
        self._model_changed()
        self.second.refresh()

    def _entry(self, kind: str, name: Optional[str]) -> Optional[ModelEntry]:
        return next((e for e in self.entries if e.kind == kind and e.name == name), None)

    def _model_changed(self, _=None) -> None:
        entry = self._entry("checkpoint", self.model.value)
        family = family_of(entry)
        fam = family_controls.apply(self, entry)  # the family's controls, from the families registry
        self.needs.value = model_needs.needs_line(fam, entry, self.models_dir)
        presets = (family_controls.presets(fam) if fam is not None and fam.is_transformer
                   else SIZE_PRESETS[family]) + [CUSTOM]
        if list(self.size.options) != presets:
            keep = self.size.value if self.size.value in presets else presets[0]
            self.size.options = presets
            self.size.value = keep
        self._size_changed()

    def _sampler_changed(self, _=None) -> None:
        """Offer only the schedule types the chosen sampler can follow."""
        from ..generation.samplers import schedules_for

        choices = schedules_for(self.sampler.value)
        keep = self.schedule.value if self.schedule.value in choices else choices[0]
        self.schedule.options = choices
        self.schedule.value = keep

    def _size_changed(self, _=None) -> None:
        custom = self.size.value == CUSTOM
        self.width.disabled = self.height.disabled = not custom
        if not custom and self.size.value:
            w, h = (int(x) for x in self.size.value.split("×"))
            self.width.value, self.height.value = w, h

    # -- LoRAs and seeds ---------------------------------------------------------------------------------

    def add_lora(self, _=None, name: Optional[str] = None, weight: float = 1.0) -> Optional[LoraRow]:
        entry = self._entry("lora", name or self.lora_choice.value)
        if entry is None or any(row.entry.name == entry.name for row in self.lora_rows):
            return None
        row = LoraRow(entry, weight, self.add_to_prompt, self.remove_lora)
        self.lora_rows.append(row)
        self.loras_box.children = [r.widget for r in self.lora_rows]
        return row

    def _lora_picked(self, change) -> None:
        if change["new"] is not None:
            self.add_lora(name=change["new"])
            self.lora_choice.value = None  # back to the placeholder: the rows below are what is applied

    def remove_lora(self, row: LoraRow) -> None:
        self.lora_rows = [r for r in self.lora_rows if r is not row]
        self.loras_box.children = [r.widget for r in self.lora_rows]

    def add_to_prompt(self, words: str) -> None:
        text = self.prompt.value.rstrip()
        if words not in text:
            self.prompt.value = f"{text}, {words}" if text else words

    def reuse_last_seed(self, _=None) -> None:
        if self.last_seed is not None:
            self.seed.value = self.last_seed

    # -- settings ------------------------------------------------------------------------------------------

    def current_settings(self) -> dict:
        return {"model": self.model.value, "vae": None if self.vae.value == AUTO_VAE else self.vae.value,
                "loras": [[r.entry.name, r.weight.value] for r in self.lora_rows], "prompt": self.prompt.value,
                "negative_prompt": self.negative.value, "sampler": self.sampler.value, "schedule": self.schedule.value,
                "steps": self.steps.value, "cfg": self.cfg.value, "clip_skip": self.clip_skip.value,
                "size": self.size.value, "width": self.width.value,
                "height": self.height.value, "seed": self.seed.value, "batch": self.batch.value}

    def _apply_saved(self, data: dict) -> None:
        """Put saved values back where they still fit (a model may have been deleted since)."""
        for key, widget in (("sampler", self.sampler), ("schedule", self.schedule), ("vae", self.vae)):
            if data.get(key) in widget.options:
                widget.value = data[key]
        for key, widget in (("prompt", self.prompt), ("negative_prompt", self.negative)):
            if isinstance(data.get(key), str):
                widget.value = data[key]
        for key, widget in (("steps", self.steps), ("cfg", self.cfg), ("clip_skip", self.clip_skip),
                            ("seed", self.seed), ("batch", self.batch),
                            ("width", self.width), ("height", self.height)):
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    widget.value = value
                except Exception:  # out of the widget's range: keep the default
                    pass
        if data.get("model") in self.model.options:
            self.model.value = data["model"]
            self._model_changed()
        if data.get("size") in self.size.options:
            self.size.value = data["size"]
            if data["size"] == CUSTOM:
                self.width.value, self.height.value = data.get("width", 512), data.get("height", 512)
        for item in data.get("loras") or []:
            try:
                self.add_lora(name=item[0], weight=float(item[1]))
            except (TypeError, ValueError, IndexError):
                continue

    # -- running -----------------------------------------------------------------------------------------

    def request_fields(self) -> dict:
        return {"model": self.model.value or "", "vae": None if self.vae.value == AUTO_VAE else self.vae.value,
                "loras": [(r.name, float(r.weight.value)) for r in self.lora_rows],
                "prompt": self.prompt.value, "negative_prompt": self.negative.value,
                "sampler": self.sampler.value, "schedule": self.schedule.value, "steps": int(self.steps.value),
                "cfg": float(self.cfg.value), "clip_skip": int(self.clip_skip.value),
                "width": int(self.width.value), "height": int(self.height.value),
                "seed": int(self.seed.value), "batch_size": int(self.batch.value),
                "models_dir": str(self.models_dir), "outputs_dir": str(self.outputs_dir) if self.outputs_dir else None,
                "preview_every": PREVIEW_EVERY, **self.second.fields()}

    def start(self, _=None) -> None:
        """Generate with the current settings; the bar and preview update live, results go on top of the gallery."""
        if not self.model.value:
            self.status.value = message("No checkpoint yet: download one in the Download tab (kind auto or checkpoint).",
                                        "warn")
            return
        saved.save(self.models_dir, self.current_settings())
        fields = self.request_fields()
        self.bar.value, self.bar.bar_style = 0.0, ""
        self.status.value = message("loading the model… (the first time takes a while)", "info")
        self.button.disabled = True
        outcome: dict = {}

        def work(emit, cancel):
            generate = self._generate
            if generate is None:
                from ..generation import generate
            try:
                outcome["result"] = generate(None, on_event=emit, cancel=cancel, tokens=self.tokens, **fields)
            except ColabSDError as err:
                outcome["error"] = redact(err)

        try:
            interrupted = pump(work, self._apply,
                               on_interrupt=lambda: setattr(self.status, "value",
                                                            message("stopping after this step…", "warn")))
        except Exception as err:  # a bug or an unexpected torch error: one line here, details in the log
            log.debug("generation failed", exc_info=True)
            outcome["error"] = redact(f"{type(err).__name__}: {err}")
            interrupted = False
        finally:
            self.button.disabled = False
            self.preview_box.children = []
        if "error" in outcome:
            self.bar.bar_style = "danger"
            self.status.value = message(f"✗ {outcome['error']}", "error")
        elif interrupted or "result" not in outcome:
            self.bar.bar_style = "warning"
            self.status.value = message("stopped", "warn")
        else:
            self._show_result(outcome["result"])

    def _apply(self, event) -> None:
        if isinstance(event, StepProgress):
            self.bar.value = event.step / event.total if event.total else 0.0
            self.status.value = message(f"image {event.image + 1} · step {event.step}/{event.total} · "
                                        f"{event.rate:.2f} it/s · ETA {fmt.duration(event.eta)}", "info")
            if event.preview is not None:
                self.preview.value = png_bytes(event.preview, 192)
                self.preview_box.children = [self.preview]
        elif isinstance(event, Progress):  # a component fetched before loading: the download's own progress
            self.bar.value = event.downloaded / event.total if event.total else 0.0
            eta = f" · ETA {fmt.duration(event.eta)}" if event.eta is not None else ""
            self.status.value = message(f"fetching {event.name or 'a component'}: {fmt.size(event.downloaded)} of "
                                        f"{fmt.size(event.total)} · {fmt.speed(event.speed)}{eta}", "info")
        elif isinstance(event, Completed):
            self.status.value = message(f"fetched {Path(event.path).name} ({fmt.size(event.bytes)}); loading…", "info")
        elif isinstance(event, Info):
            self.status.value = message(event.message, "info")

    def add_to_gallery(self, image, parameters: str, path: Optional[Path]) -> GalleryItem:
        """One more image on top of the gallery (the Upscale action's result)."""
        item = GalleryItem(image, parameters, path)
        self.reuse.attach(item)
        self.second.gallery_actions(item)
        self.gallery_items = ([item] + self.gallery_items)[:GALLERY_LIMIT]
        self.gallery.children = [i.widget for i in self.gallery_items]
        return item

    def _show_result(self, result) -> None:
        if getattr(result, "cancelled", False) and not getattr(result, "images", None):
            self.bar.bar_style = "warning"
            self.status.value = message("stopped", "warn")
            return
        images = list(getattr(result, "images", []) or [])
        paths = list(getattr(result, "paths", []) or [])
        texts = list(getattr(result, "parameters", []) or [])
        seeds = list(getattr(result, "seeds", []) or [])
        if seeds:
            self.last_seed = int(seeds[0])
        self.results.append(result)
        new = [GalleryItem(img, texts[i] if i < len(texts) else "", Path(paths[i]) if i < len(paths) else None)
               for i, img in enumerate(images)]
        for item in new:
            self.reuse.attach(item)
            self.second.gallery_actions(item)
        self.gallery_items = (list(reversed(new)) + self.gallery_items)[:GALLERY_LIMIT]
        self.gallery.children = [item.widget for item in self.gallery_items]
        self.bar.value, self.bar.bar_style = 1.0, "success"
        where = Path(paths[0]).parent if paths else "memory only"
        seed_text = f" · seed {self.last_seed}" if self.last_seed is not None else ""
        stopped = " (stopped early)" if getattr(result, "cancelled", False) else ""
        self.status.value = message(f"✓ {len(images)} image{'s' if len(images) != 1 else ''}{seed_text}{stopped} · "
                                    f"saved in {where}", "ok")
