"""The download panel inside a real kernel, driven over the Jupyter protocol the way Colab drives it.

A frontend's click arrives as a comm message; while the callback runs, the widget updates must go out on
IOPub (that is what the browser draws); Colab's stop button is a kernel interrupt (SIGINT), which must
cancel the download and keep its `.part`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from servers import TestServer  # noqa: E402
from ui_helpers import part_size, slow_route  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def run(kc, code: str, timeout: float = 30) -> str:
    """Execute code in the kernel and return its printed output (errors included)."""
    msg_id = kc.execute(code)
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return "".join(out).strip()


def test_click_streams_progress_while_busy_and_interrupt_cancels_keeping_the_part(tmp_path):
    models = tmp_path / "models"
    body = os.urandom(160 * 64 * 1024)
    with TestServer() as srv:
        srv.route("/big.safetensors", slow_route(body, pause=0.05))
        km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
        try:
            setup = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                     "from colab_sd.ui.download_panel import DownloadPanel\n"
                     f"panel = DownloadPanel({str(models)!r})\n"
                     f"panel.urls.value = {srv.url('/big.safetensors')!r}\n"
                     "print(panel.button.model_id)")
            button_id = run(kc, setup).splitlines()[-1]
            # Exactly what a frontend sends when the button is clicked.
            click = kc.session.msg("comm_msg", {"comm_id": button_id,
                                                "data": {"method": "custom", "content": {"event": "click"}}})
            kc.shell_channel.send(click)
            updates, busy, stopped = [], None, False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = kc.get_iopub_msg(timeout=60)
                if msg["parent_header"].get("msg_id") != click["header"]["msg_id"]:
                    continue
                if msg["msg_type"] == "status":
                    busy = msg["content"]["execution_state"] == "busy"
                    if not busy:
                        break
                elif msg["msg_type"] == "comm_msg":
                    state = msg["content"]["data"].get("state", {})
                    if "value" in state and isinstance(state["value"], float):
                        updates.append(state["value"])
                        # Colab's stop button, pressed once, when the bar has visibly moved (a second press
                        # could land in the callback's wrap-up, after the first one was already handled).
                        if (not stopped and 0 < state["value"] < 0.5 and part_size(models / "other") > 0
                                and len(updates) >= 2):
                            km.interrupt_kernel()
                            stopped = True
            assert busy is False, "the click's callback did not finish"
            # The bar's values went out while the kernel was busy in the callback: the browser could draw them.
            assert len(updates) >= 2 and all(0 < v < 1 for v in updates)
            report = run(kc, "print(panel.rows[0].state, '|', panel.rows[0].status.value, '|', panel.message.value)")
            assert report.startswith("cancelled |") and "the partial file is kept" in report
            assert "0 of 1 done, cancelled" in report
            part = models / "other" / "big.safetensors.part"
            assert 0 < part.stat().st_size < len(body) and not (models / "other" / "big.safetensors").exists()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
