"""`colab-sd download` as a user runs it: a real subprocess against a real local server."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import Route

BODY = os.urandom(2 * 1024 * 1024 + 7)
SHA = hashlib.sha256(BODY).hexdigest()
CANARY = "fake-canary-token-8d41f0a6c3"


def run_cli(*args, env=None, timeout=60):
    full_env = {**os.environ, "NO_PROXY": "127.0.0.1", **(env or {})}
    full_env.pop("COLAB_SD_HOME", None)
    return subprocess.run([sys.executable, "-m", "colab_sd.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_json_event_stream_and_file(server, tmp_path):
    server.route("/dl", Route(body=BODY, disposition='attachment; filename="tiny.safetensors"'))
    out = run_cli("download", "--json", "--dir", str(tmp_path), server.url("/dl"))
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert all("status" in e for e in events)
    assert events[0]["status"] == "info" and events[-1]["status"] == "completed"
    progress = [e for e in events if e["status"] == "progress"]
    assert progress and progress[-1]["downloaded"] == progress[-1]["total"] == len(BODY)
    assert set(progress[0]) == {"status", "job", "downloaded", "total", "speed", "eta", "unit", "name"}
    assert {e["name"] for e in progress} == {"tiny.safetensors"}  # the name, once the response gave it
    final = tmp_path / "other" / "tiny.safetensors"
    assert events[-1]["path"] == str(final) and events[-1]["sha256"] == SHA
    assert hashlib.sha256(final.read_bytes()).hexdigest() == SHA
    left = {p.name for p in (tmp_path / "other").iterdir()} - {"tiny.safetensors.json"}  # the sidecar may sit beside it
    assert left == {"tiny.safetensors"}


def test_progress_is_throttled(server, tmp_path):
    """About two progress events a second: a slow server that takes ~2 s must not flood the stream."""
    body = os.urandom(400 * 1024)

    def slow(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        for i in range(0, len(body), 4096):  # 100 small writes, 20 ms apart
            h.wfile.write(body[i:i + 4096])
            h.wfile.flush()
            time.sleep(0.02)

    server.route("/slow.bin", Route(handler=slow))
    started = time.monotonic()
    out = run_cli("download", "--json", "--dir", str(tmp_path), server.url("/slow.bin"))
    elapsed = time.monotonic() - started
    progress = [json.loads(l) for l in out.stdout.splitlines() if '"progress"' in l]
    assert out.returncode == 0, out.stderr
    assert 1 <= len(progress) <= elapsed * 2 + 3  # ~2/s plus the final one
    assert progress[-1]["downloaded"] == len(body)


def test_type_name_and_sha256_options(server, tmp_path):
    server.route("/f.safetensors", Route(body=BODY))
    out = run_cli("download", "--dir", str(tmp_path), "--type", "LoRA", "--name", "mine.safetensors",
                  "--sha256", SHA, server.url("/f.safetensors"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lora" / "mine.safetensors").read_bytes() == BODY
    assert "saved" in out.stderr  # the tqdm face reports where it went


def test_failures_exit_1_with_one_line_each(server, tmp_path):
    server.route("/ok.safetensors", Route(body=BODY))
    server.route("/page.safetensors", Route(body=b"<html><title>Log in</title></html>", content_type="text/html"))
    out = run_cli("download", "--dir", str(tmp_path), server.url("/page.safetensors"), server.url("/ok.safetensors"),
                  server.url("/missing.safetensors"))
    assert out.returncode == 1
    errors = [l for l in out.stderr.splitlines() if l.startswith("colab-sd: error:")]
    assert len(errors) == 2, out.stderr
    assert "web page instead of" in errors[0] and "no such file" in errors[1]
    assert "Traceback" not in out.stderr
    assert (tmp_path / "other" / "ok.safetensors").read_bytes() == BODY


def test_bad_input_messages(tmp_path):
    out = run_cli("download", "--dir", str(tmp_path), "--type", "wizard", "http://127.0.0.1:9/x")
    assert out.returncode == 2 and "unknown model type 'wizard'" in out.stderr  # a usage error, like the others
    out = run_cli("download", "--dir", str(tmp_path), "--sha256", "xyz", "http://127.0.0.1:9/x")
    assert out.returncode == 1 and "not a sha256" in out.stderr
    out = run_cli("download", "--name", "a", "http://a/x", "http://b/y")
    assert out.returncode == 2 and "one URL" in out.stderr


def test_download_path_imports_nothing_heavy(server, tmp_path):
    server.route("/f.bin", Route(body=b"\x00" * 1000))
    script = (
        "import sys; from colab_sd.cli import main\n"
        f"code = main(['download', '--dir', {str(tmp_path)!r}, {server.url('/f.bin')!r}])\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'ipywidgets', 'IPython') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'CODE', code)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_PROXY": "127.0.0.1"})
    assert "HEAVY [] CODE 0" in out.stdout, out.stdout + out.stderr


def test_canary_token_never_leaks(server, tmp_path):
    """A token given every way a user can give one never shows up in output, events, errors or files."""
    echo = f'{{"error": "invalid token {CANARY}"}}'.encode()
    server.route("/secret.safetensors", Route(body=BODY))
    server.route("/denied.safetensors", Route(body=echo, status=401, content_type="application/json"))
    server.route("/page.safetensors", Route(body=f"<html><title>Bad {CANARY}</title></html>".encode(),
                                            content_type="text/html"))
    env = {"CIVITAI_TOKEN": CANARY, "HF_TOKEN": CANARY}
    urls = [server.url(f"/secret.safetensors?token={CANARY}"), server.url(f"/denied.safetensors?token={CANARY}"),
            server.url(f"/page.safetensors?token={CANARY}")]
    for before, after in (([], ["--json"]), (["-v"], []), (["-v"], ["--json"]), ([], [])):
        out = run_cli(*before, "download", *after, "--dir", str(tmp_path), "--civitai-token", CANARY, *urls, env=env)
        assert out.returncode == 1
        assert CANARY not in out.stdout and CANARY not in out.stderr, (before, after, out.stdout, out.stderr)
        assert "token=***" in out.stdout + out.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes() or path.name == "secret.safetensors", path
    assert (tmp_path / "other" / "secret.safetensors").read_bytes() == BODY


def test_ctrl_c_exits_130_and_keeps_part(server, tmp_path):
    big = os.urandom(4 * 1024 * 1024)

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(big)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        try:
            for i in range(0, len(big), 65536):
                h.wfile.write(big[i:i + 65536])
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    server.route("/slow.safetensors", Route(handler=trickle))
    proc = subprocess.Popen([sys.executable, "-m", "colab_sd.cli", "download", "--json", "--dir", str(tmp_path),
                             server.url("/slow.safetensors")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "NO_PROXY": "127.0.0.1"})
    part = tmp_path / "other" / "slow.safetensors.part"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 100_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert '"status": "cancelled"' in stdout
    assert "partial file is kept" in stderr and "Traceback" not in stderr
    assert part.exists() and not (tmp_path / "other" / "slow.safetensors").exists()


def test_bare_civitai_version_id_with_source_flag(civitai, model_bytes, models, monkeypatch, capsys):
    """`colab-sd download --source civitai 7001`: the bare id is a CivitAI model-version id."""
    from colab_sd import cli
    from fakes.civitai import TOKEN, FakeFile

    civitai.add_version(model_id=7000, version_id=7001, model_name="Bare", model_type="LORA",
                        files=[FakeFile(7101, "bare.safetensors", model_bytes["lora"])])
    monkeypatch.setenv("CIVITAI_TOKEN", TOKEN)
    assert cli.main(["download", "--source", "civitai", "--dir", str(models), "--json", "7001"]) == 0
    done = [json.loads(l) for l in capsys.readouterr().out.splitlines() if '"completed"' in l]
    assert done and done[0]["path"].endswith("lora/bare.safetensors")
    assert hashlib.sha256((models / "lora" / "bare.safetensors").read_bytes()).digest() == \
        hashlib.sha256(model_bytes["lora"]).digest()
    assert cli.main(["download", "--source", "civitai", "--dir", str(models), "99999"]) == 1
    assert "does not exist or was removed" in capsys.readouterr().err


def test_verbose_is_accepted_after_the_command_and_help_lists_links_and_tokens(server, tmp_path):
    server.route("/v.safetensors", Route(body=BODY))
    out = run_cli("download", "-v", "--dir", str(tmp_path), server.url("/v.safetensors"))
    assert out.returncode == 0, out.stderr
    assert "[colab_sd] INFO" in out.stderr  # the verbose logs are on (quiet runs show warnings only)
    assert (tmp_path / "other" / "v.safetensors").read_bytes() == BODY
    shown = run_cli("download", "--help").stdout
    for word in ("civitai:V", "huggingface.co", "drive.google.com", "CIVITAI_TOKEN", "HF_TOKEN", "exit status"):
        assert word in shown, word


# ---------------------------------------------------------------------------------------------- what new users met (C)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write into: mode 555 (enough for a normal user) or, as root, a read-only tmpfs."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    mounted = False
    if os.access(folder, os.W_OK):  # root ignores modes: a read-only file system stops root too
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
    assert not os.access(folder, os.W_OK), "no way to make a read-only folder here"
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
    folder.chmod(0o755)


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("colab-sd: error:")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", lines[0]), lines[0]  # a sentence, not a class name
    return lines[0]


def test_unusable_models_folder_is_a_sentence(tmp_path, read_only_folder):
    a_file = tmp_path / "FILE"
    a_file.write_text("not a folder")
    for folder, words in ((a_file, f"{a_file} is a file, not a folder"),
                          (a_file / "below", f"{a_file} is a file, not a folder"),
                          (Path("/proc/colab-sd-test"), "cannot create /proc/colab-sd-test"),
                          (read_only_folder, str(read_only_folder))):
        out = run_cli("download", "--dir", str(folder), "http://127.0.0.1:9/x.safetensors")
        line = one_error_line(out)
        assert out.returncode == 1 and words in line and "choose another models folder" in line, line
    out = run_cli("models", "--dir", str(a_file))
    assert out.returncode == 1 and "is a file, not a folder" in one_error_line(out)


def test_wrong_user_sha256_names_both_hashes_and_keeps_nothing(server, tmp_path):
    server.route("/w.safetensors", Route(body=BODY))
    wrong = "ab" * 32
    out = run_cli("download", "--dir", str(tmp_path), "--sha256", wrong, server.url("/w.safetensors"))
    line = one_error_line(out)
    assert out.returncode == 1 and f"expected {wrong} but got {SHA}" in line and "not kept" in line
    assert "run again" not in line
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_failed_downloads_leave_no_empty_folders(server, tmp_path, model_bytes):
    root = tmp_path / "models"
    out = run_cli("download", "--dir", str(root), server.url("/missing.safetensors"))
    assert out.returncode == 1 and not root.exists()  # nothing was there before: nothing is left
    (root / "vae").mkdir(parents=True)  # a folder the user made stays, even empty
    out = run_cli("download", "--dir", str(root), "--type", "lora", server.url("/missing.safetensors"))
    assert out.returncode == 1 and sorted(p.name for p in root.iterdir()) == ["vae"]
    server.route("/style.safetensors", Route(body=model_bytes["lora"]))
    out = run_cli("download", "--dir", str(root), server.url("/style.safetensors"))
    assert out.returncode == 0, out.stderr  # probed as a LoRA: it went through other/ to lora/
    assert sorted(p.name for p in root.iterdir()) == ["lora", "vae"]


def test_bar_is_labelled_with_the_file_name_once_known(server, tmp_path):
    server.route("/dl/12345", Route(body=BODY, disposition='attachment; filename="Real_Name_v2.safetensors"'))
    out = run_cli("download", "--dir", str(tmp_path), server.url("/dl/12345"))
    assert out.returncode == 0, out.stderr
    bars = [line for line in re.split(r"[\r\n]", out.stderr) if "|" in line and "B/s" in line]
    assert bars and bars[-1].startswith("Real_Name_v2.safetensors"), bars
