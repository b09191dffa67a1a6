"""`colab-sd … | head`: a reader that goes away early ends the command quietly (exit 141, no traceback)."""
import argparse
import os
import subprocess
import sys

import pytest
from PIL import Image, PngImagePlugin

from colab_sd.cli import build_parser
from colab_sd.cli.common import EXIT_BROKEN_PIPE, EXIT_OK

PARAMETERS = ("a cat on a sofa, " * 400 + "\nNegative prompt: dog\n"
              "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 8x8, Model: tiny")


def command_names() -> list[str]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(subparsers.choices)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "colab_sd.cli", *args]


def assert_quiet_broken_pipe(returncode: int, stderr: bytes, allowed=(EXIT_BROKEN_PIPE,)) -> None:
    text = stderr.decode(errors="replace")
    assert returncode in allowed, text
    assert "Traceback" not in text and "BrokenPipeError" not in text and "Exception ignored" not in text, text


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 PNGs whose A1111 text adds up to far more than a pipe buffer (64 KiB), so `info` blocks on the pipe."""
    folder = tmp_path_factory.mktemp("pngs")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PARAMETERS)
    paths = []
    for i in range(40):
        path = folder / f"img{i:02d}.png"
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        paths.append(str(path))
    return paths


def test_info_piped_into_head(images):
    """The user's case: `colab-sd info *.png | head -n 1`, with a real `head` that exits after one line."""
    writer = subprocess.Popen(cli("info", *images), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-n", "1"], stdin=writer.stdout, capture_output=True, timeout=60)
    writer.stdout.close()  # only head holds the read end now: it goes away when head exits
    _, stderr = writer.communicate(timeout=60)
    assert head.stdout.decode().startswith(images[0]), head.stdout
    assert_quiet_broken_pipe(writer.returncode, stderr)


@pytest.mark.parametrize("args", [["--help"], ["--version"]] + [[name, "--help"] for name in command_names()],
                         ids=lambda args: " ".join(args))
def test_every_command_into_a_closed_pipe(args):
    """The reader is gone before the command writes its first byte: help and version output ends quietly too, for
    every command. argparse itself drops a failed write of its help (exit 0); what stays buffered is flushed by
    main() (exit 141), never by the interpreter at exit ('Exception ignored … BrokenPipeError')."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(cli(*args), stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert_quiet_broken_pipe(done.returncode, done.stderr, allowed=(EXIT_OK, EXIT_BROKEN_PIPE))


def test_a_handler_output_into_a_closed_pipe(images):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(cli("info", "--json", images[0]), stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert_quiet_broken_pipe(done.returncode, done.stderr)


def test_an_open_pipe_still_gets_everything(images):
    """The guard changes nothing for a reader that stays: exit 0, every image described."""
    done = subprocess.run(cli("info", *images[:3]), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.decode().splitlines() if line.startswith(os.sep)] == images[:3]
