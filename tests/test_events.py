"""Events: throttling, listeners that break, JSON shapes, speed and ETA."""
import json

from colab_sd import events as ev


def test_throttle_passes_final_and_flushes_pending():
    clock = [0.0]
    got = []
    throttle = ev.Throttle(got.append, interval=0.5, clock=lambda: clock[0])
    for i in range(1, 11):
        clock[0] = i * 0.1
        throttle(ev.Progress(downloaded=i, total=100, speed=1.0, eta=1.0))
    # t=0.1 passes; the next pass is due 0.5 s later (t=0.6); the others wait
    assert [e.downloaded for e in got] == [1, 6]
    throttle(ev.Info("done soon"))
    assert [getattr(e, "downloaded", None) for e in got] == [1, 6, 10, None]  # pending 10 flushed before info
    throttle(ev.Progress(downloaded=100, total=100, speed=1.0, eta=0.0))
    assert got[-1].downloaded == 100  # 100 % always passes


def test_guard_and_fanout_survive_a_broken_listener():
    seen = []

    def broken(event):
        raise RuntimeError("boom")

    ev.Fanout(broken, seen.append)(ev.Info("x"))
    assert len(seen) == 1
    ev.Throttle(broken)(ev.Info("y"))  # no exception


def test_event_json_shapes():
    assert json.loads(ev.Progress(downloaded=5, total=None, speed=2.5, eta=None, job="j").to_json()) == {
        "status": "progress", "job": "j", "downloaded": 5, "total": None, "speed": 2.5, "eta": None, "unit": "B"}
    assert ev.Error(message="m").to_dict() == {"status": "error", "message": "m"}
    assert ev.Cancelled().to_dict()["status"] == "cancelled"
    assert ev.StepProgress(step=1, total=2, rate=3.0, eta=0.3, preview=object()).to_dict()["has_preview"] is True


def test_meter_speed_and_eta():
    clock = [0.0]
    meter = ev.Meter(clock=lambda: clock[0])
    clock[0] = 1.0
    meter.progress(100, 1000)
    clock[0] = 2.0
    p = meter.progress(200, 1000)
    assert p.speed == 100.0 and p.eta == 8.0
    assert meter.progress(300, None).eta is None


def test_first_progress_after_a_resume_has_no_made_up_speed():
    """Resuming at 5 GB: the first chunk arrives microseconds after the meter starts; that is no speed yet."""
    clock = [100.0]
    meter = ev.Meter(clock=lambda: clock[0])
    base = 5 * 1024 ** 3
    clock[0] += 0.00002
    first = meter.progress(base + 65536, base + 10 * 1024 ** 2, base=base)
    assert first.speed == 0.0 and first.eta is None
    clock[0] += 0.5
    second = meter.progress(base + 65536 + 512 * 1024, base + 10 * 1024 ** 2, base=base)
    assert second.speed == 512 * 1024 / 0.5 and second.eta is not None


def test_progress_carries_the_file_name_and_the_bar_shows_it():
    import io

    p = ev.Progress(downloaded=1, total=2, speed=0.0, eta=None, job="https://host/api/download/models/12345",
                    name="Real_Name_v2.safetensors")
    assert p.to_dict()["name"] == "Real_Name_v2.safetensors"
    assert "name" not in ev.Progress(downloaded=1, total=2, speed=0.0, eta=None).to_dict()
    out = io.StringIO()
    bar = ev.TqdmBar(file=out)
    bar(p)
    bar(ev.Completed(path="/m/Real_Name_v2.safetensors", bytes=2, sha256=None, job=p.job))
    assert out.getvalue().lstrip("\r").startswith("Real_Name_v2.safetensors")
