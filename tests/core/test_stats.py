"""core.stats: the measured U-Net time of a run, from CUDA events on CUDA (read once, at
the end) and from the clock elsewhere."""
import types

import pytest
import torch

from deepcache_plugin.core import stats

SHAPE = (2, 4, 8, 8)


def timed_run(times, spans):
    """Calls of (cached?, seconds) recorded through CallTimes; `spans` advances the time source."""
    for cached, seconds in times:
        span = spans.begin()
        spans.advance(seconds)
        spans.times.stop(span, cached, SHAPE)
    return spans.times


class Clock:
    def __init__(self, monkeypatch):
        self.now = 100.0
        monkeypatch.setattr(stats.time, "perf_counter", lambda: self.now)
        self.times = stats.CallTimes()

    def begin(self):
        return self.times.start(torch.zeros(1))

    def advance(self, seconds):
        self.now += seconds


class FakeCuda:
    """torch.cuda's events and streams, with a clock the test moves: no GPU needed."""

    def __init__(self, monkeypatch):
        self.now_ms = 0.0
        self.synchronized = 0
        self.streams = []
        cuda = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.at = None

            def record(self, stream):
                cuda.streams.append(stream)
                self.at = cuda.now_ms

            def elapsed_time(self, end):
                assert cuda.synchronized, "an event read before the run's end synchronised"
                return end.at - self.at

            def synchronize(self):
                cuda.synchronized += 1

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream", device))
        self.times = stats.CallTimes()

    def begin(self):
        return self.times.start(types.SimpleNamespace(is_cuda=True, device="cuda:0"))

    def advance(self, seconds):
        self.now_ms += seconds * 1000.0


@pytest.fixture(params=["clock", "cuda"])
def spans(request, monkeypatch):
    return Clock(monkeypatch) if request.param == "clock" else FakeCuda(monkeypatch)


def test_cached_calls_are_measured_against_the_median_full_call(spans):
    times = timed_run([(False, 2.0), (False, 4.0), (True, 1.0), (False, 3.0), (True, 0.5)], spans)
    m = times.measure()
    assert m.full_seconds == pytest.approx(9.0) and m.cached_seconds == pytest.approx(1.5)
    assert m.saved_seconds == pytest.approx(3.0 + 3.0 - 1.5)  # each cached call would have cost 3 s in full
    assert m.speedup == pytest.approx((9.0 + 6.0) / (9.0 + 1.5))


def test_no_cached_call_no_speedup(spans):
    assert timed_run([(False, 2.0)], spans).measure().speedup is None


def test_cuda_events_are_read_once_when_the_run_ends(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    timed_run([(False, 2.0), (True, 1.0)], cuda)
    assert cuda.synchronized == 0 and cuda.streams == [("stream", "cuda:0")] * 4
    cuda.times.measure()
    assert cuda.synchronized == 1
