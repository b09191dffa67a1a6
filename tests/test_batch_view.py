"""The Batch view in the Generate panel: prompts × seeds from the panel's settings, rows, bar and thumbnails."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("diffusers")


from colab_sd.generation import parse_parameters, read_png_parameters  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"),
              pytest.mark.usefixtures("offline_panel")]


def test_batch_view_runs_prompts_times_seeds_with_the_panel_settings(library, tmp_path):
    app = App(models_dir=library, outputs_dir=tmp_path / "outputs")
    panel = app.generate
    view = panel.batch_view
    assert view.widget in panel.widget.children  # hooked into the Generate panel
    panel.model.value = "tiny-sd1.safetensors"
    panel.sampler.value = "Euler"
    panel.steps.value = 2
    panel.size.value = "Custom"
    panel.width.value, panel.height.value = 64, 64
    panel.seed.value = 40
    view.prompts.value = "a red house\n\n a blue tree \n"
    view.seeds.value = 2
    view.workers.value = "1"
    on_main = []
    view.bar.observe(lambda c: on_main.append(threading.current_thread() is threading.main_thread()), names="value")
    view.button.click()

    result = view.result
    assert result is not None and result.ok, view.status.value
    assert [(j.request.prompt, j.request.seed) for j in result.jobs] == [
        ("a red house", 40), ("a red house", 41), ("a blue tree", 40), ("a blue tree", 41)]
    assert view.bar.value == 1.0 and view.bar.bar_style == "success" and on_main and all(on_main)
    assert "4 image(s) from 4/4 job(s)" in view.status.value
    assert len(view.thumbs.children) == 4
    assert "worker 0 · cpu" in view.rows.children[0].value
    for job in result.jobs:
        params = parse_parameters(read_png_parameters(job.paths[0]))
        assert params["Sampler"] == "Euler" and params["Steps"] == "2" and params["Seed"] == str(job.request.seed)
        assert job.paths[0].startswith(str(tmp_path / "outputs"))


def test_batch_view_without_a_model_says_so(tmp_path):
    app = App(models_dir=tmp_path / "empty")
    view = app.generate.batch_view
    view.button.click()
    assert "No checkpoint yet" in view.status.value and view.result is None
