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
