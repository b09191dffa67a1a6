"""Download and Library panels, driven like a user: type URLs, click Download, read rows, bars and the library.

Real HTTP against a local server serving real bytes; the button callback runs on this (main) thread,
exactly as in a kernel.
"""
from __future__ import annotations

import os
import threading

import pytest

pytest.importorskip("ipywidgets")

from servers import Route  # noqa: E402
from ui_helpers import interrupt_main_when, part_size, sha256, slow_route  # noqa: E402

from colab_sd.ui.app import App  # noqa: E402
from colab_sd.ui.download_panel import DownloadPanel, parse_urls  # noqa: E402


def make_app(models):
    return App(models_dir=models)


def test_parse_urls_skips_blanks_comments_and_repeats():
    text = "  https://a/x.safetensors \n\n# a note\nhttps://b/y.ckpt\nhttps://a/x.safetensors\n"
    assert parse_urls(text) == ["https://a/x.safetensors", "https://b/y.ckpt"]


def test_batch_download_rows_bars_and_library(server, models):
    good = os.urandom(300_000)
    unknown_size = os.urandom(200_000)
    server.route("/files/style.safetensors", Route(body=good, disposition='attachment; filename="my_style.safetensors"'))
    server.route("/files/chunked.bin", Route(body=unknown_size, chunked=True))
    server.route("/files/login", Route(body=b"<html><head><title>Please log in</title></head></html>",
                                       content_type="text/html"))
    app = make_app(models)
    panel = app.download
    panel.urls.value = "\n".join([server.url("/files/style.safetensors"), server.url("/files/chunked.bin"),
                                  server.url("/files/missing.safetensors"), server.url("/files/login")])
    panel.kind.value = "lora"
    panel.button.click()

    ok, chunked, missing, login = panel.rows
    assert [r.state for r in panel.rows] == ["done", "done", "error", "error"]
    # A finished row: full green bar, the file's name, folder and size.
    assert ok.bar.value == 1.0 and ok.bar.bar_style == "success"
    assert "my_style.safetensors" in ok.status.value and str(models / "lora") in ok.status.value
    assert "293.0 KB" in ok.status.value
    assert sha256(models / "lora" / "my_style.safetensors") == sha256_bytes(good)
    assert chunked.bar.bar_style == "success" and sha256(models / "lora" / "chunked.bin") == sha256_bytes(unknown_size)
    # Failures: red bar and the one-line reason, nothing saved under a final name.
    assert missing.bar.bar_style == "danger" and "404" in missing.status.value
    assert login.bar.bar_style == "danger" and "log in" in login.status.value.lower()
    assert not (models / "lora" / "login").exists()
    assert "2 of 4 done, 2 failed" in panel.message.value
    assert panel.button.disabled is False
    # The Library was refreshed by the download and lists both files under their kind.
    names = [e.name for e in app.library.entries]
    assert names == ["chunked.bin", "my_style.safetensors"]
    assert "my_style.safetensors" in app.library.table.value and "lora (2)" in app.library.table.value


def test_empty_box_says_what_to_do(models):
    panel = DownloadPanel(models)
    panel.urls.value = "  \n# only a comment\n"
    panel.button.click()
    assert panel.rows == [] and "Paste at least one link" in panel.message.value


def test_progress_updates_on_the_main_thread_while_downloading(server, models):
    body = os.urandom(20 * 64 * 1024)
    server.route("/slow/model.safetensors", slow_route(body, pause=0.1))
    panel = DownloadPanel(models)
    panel.urls.value = server.url("/slow/model.safetensors")
    seen = []

    def watch_rows(change):
        row = panel.rows[0]
        row.bar.observe(lambda c: seen.append((c["new"], threading.current_thread() is threading.main_thread())),
                        names="value")
        row.status.observe(lambda c: seen.append((c["new"], threading.current_thread() is threading.main_thread())),
                           names="value")

    panel.rows_box.observe(watch_rows, names="children")
    panel.button.click()
    row = panel.rows[0]
    assert row.state == "done" and sha256(models / "other" / "model.safetensors") == sha256_bytes(body)
    bar_values = [v for v, _ in seen if isinstance(v, float)]
    # The bar moved through intermediate values before 100 %, and every update came from the main thread
    # (in Colab, updates from other threads may never reach the browser).
    assert any(0 < v < 1 for v in bar_values) and bar_values[-1] == 1.0
    assert all(on_main for _, on_main in seen)
    assert any("ETA" in v and "/s" in v for v, _ in seen if isinstance(v, str))


def test_stop_button_cancels_keeps_part_and_next_click_resumes(server, models):
    body = os.urandom(40 * 64 * 1024)
    route = server.route("/slow/big.safetensors", slow_route(body, pause=0.1))
    server.route("/files/second.safetensors", Route(body=b"second" * 1000))
    panel = DownloadPanel(models)
    panel.urls.value = server.url("/slow/big.safetensors") + "\n" + server.url("/files/second.safetensors")
    interrupt_main_when(lambda: part_size(models / "other") > 64 * 1024)
    panel.button.click()  # Colab's stop button arrives as KeyboardInterrupt in this callback

    first, second = panel.rows
    assert first.state == "cancelled" and first.bar.bar_style == "warning"
    assert "partial file is kept" in first.status.value
    assert second.state == "cancelled" and "before it started" in second.status.value
    assert "cancelled" in panel.message.value
    part = models / "other" / "big.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < len(body) and not (models / "other" / "big.safetensors").exists()
    assert not (models / "other" / "second.safetensors").exists()

    route.slow = False
    panel.button.click()
    assert [r.state for r in panel.rows] == ["done", "done"]
    assert sha256(models / "other" / "big.safetensors") == sha256_bytes(body)
    assert not part.exists()
    ranges = [r["headers"].get("Range") for r in server.hits("/slow/big.safetensors")]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=") and int(ranges[-1][6:].split("-")[0]) > 0


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()




def test_auto_kind_puts_each_file_in_its_folder_and_the_row_says_where(server, models, tmp_path):
    from safetensors_factory import make_embedding, make_lora

    lora = make_lora(tmp_path / "detail_tweaker.safetensors").read_bytes()
    embedding = make_embedding(tmp_path / "easy_negative.safetensors").read_bytes()
    server.route("/dl/detail_tweaker.safetensors", Route(body=lora))
    server.route("/dl/easy_negative.safetensors", Route(body=embedding))
    app = App(models_dir=models)
    app.download.urls.value = server.url("/dl/detail_tweaker.safetensors") + "\n" + server.url("/dl/easy_negative.safetensors")
    app.download.button.click()  # kind "auto": the file's header decides

    lora_row, embedding_row = app.download.rows
    assert lora_row.path == models / "lora" / "detail_tweaker.safetensors" and lora_row.path.read_bytes() == lora
    assert f"in {models / 'lora'}" in lora_row.status.value
    assert embedding_row.path == models / "embedding" / "easy_negative.safetensors"
    assert f"in {models / 'embedding'}" in embedding_row.status.value
    assert [(e.kind, e.name) for e in app.library.entries] == [("lora", "detail_tweaker.safetensors"),
                                                               ("embedding", "easy_negative.safetensors")]


def test_library_rescans_when_its_tab_opens(models):
    app = make_app(models)
    assert app.library.entries == []
    (models / "vae").mkdir(exist_ok=True)
    (models / "vae" / "copied_by_hand.safetensors").write_bytes(b"\0" * 64)
    app.show("Library")
    assert [e.name for e in app.library.entries] == ["copied_by_hand.safetensors"]
    assert "copied_by_hand.safetensors" in app.library.table.value
    if app.generate is not None:
        assert "copied_by_hand.safetensors" in app.generate.vae.options


def test_a_failed_download_is_reported_once(server, models):
    """download() emits its Error event and then raises: the row and the panel say it once, not twice."""
    server.route("/ok.safetensors", Route(body=os.urandom(5000)))
    panel = DownloadPanel(models_dir=models)
    applied = []
    original = panel._apply
    panel._apply = lambda item: (applied.append(item), original(item))
    panel.urls.value = f"{server.url('/missing.safetensors')}\n{server.url('/ok.safetensors')}"
    panel.start()
    errors = [item for index, item in applied if index == 0 and getattr(item, "status", None) == "error"]
    assert len(errors) == 1 and "no such file" in errors[0].message
    assert [row.state for row in panel.rows] == ["error", "done"]
    assert panel.rows[0].status.value.count("no such file") == 1
    assert "1 of 2 done, 1 failed" in panel.message.value
