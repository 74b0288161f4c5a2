"""core.call_unet: the one per-call path of every host adapter."""
import logging

import pytest
import torch

from deepcache_plugin.core import DeepCacheConfig, LdmOps, Mode, RunState, call_unet, plan_run, unet_forward
from deepcache_plugin.core.call import open_call
from deepcache_plugin.core.store import CacheStore

from ..guards import HostReads, no_fake_or_meta_inputs
from ..unets import CoreSampler, tiny_unet

SIGMAS = [14.6, 9.0, 6.0, 4.0, 2.5, 1.5, 0.0]


def new_run(interval=3):
    return RunState(DeepCacheConfig(interval=interval), SIGMAS, 12, CacheStore().open_run())


class Forwards:
    """A host forward and a DeepCache forward that record how they were called."""

    def __init__(self, fail=None, store=True):
        self.seen, self.fail, self.store = [], fail, store

    def host(self):
        self.seen.append("host")
        return torch.zeros(1)

    def forward(self, call):
        self.seen.append("cached" if call.deep is not None else "full")
        if self.fail is not None:
            raise self.fail
        if call.deep is None and self.store:
            return torch.ones(1), torch.ones(1, 2)
        return torch.ones(1), None


def one_call(run, f, keys=("c",), passthrough=()):
    x = torch.zeros(1, 4)
    return call_unet(lambda: open_call(run, list(keys) if keys is not None else None, x), f.host, f.forward,
                     passthrough=passthrough)


def test_modes_reach_the_right_forward_and_the_deep_feature_is_stored():
    run, f = new_run(), Forwards()
    for step in range(3):
        run.begin_evaluation()
        one_call(run, f)
        run.on_step_end(step)
    assert f.seen == ["full", "cached", "cached"]
    assert torch.equal(run.cache.read(["c"]), torch.ones(1, 2))
    assert one_call(None, f).shape == (1,) and f.seen[-1] == "host"  # no run: the host's forward
    run.begin_evaluation()
    one_call(run, f, keys=None)  # a call DeepCache must not touch
    assert f.seen[-1] == "host"


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_an_error_turns_deepcache_off_once_and_the_host_answers():
    run, f = new_run(), Forwards(fail=RuntimeError("kaputt"))
    records = Records()
    logging.getLogger("DeepCache").addHandler(records)
    try:
        for step in range(4):
            run.begin_evaluation()
            assert torch.equal(one_call(run, f), torch.zeros(1))
            run.on_step_end(step)
    finally:
        logging.getLogger("DeepCache").removeHandler(records)
    assert f.seen == ["full", "host", "host", "host", "host"]
    assert "RuntimeError: kaputt" in run.summary().disabled_reason
    assert len([m for m in records.messages if "kaputt" in m]) == 1


def test_a_failure_of_the_bookkeeping_itself_never_breaks_the_call():
    f, records = Forwards(), Records()

    def broken_open():
        raise AttributeError("no stream")

    def broken_stop(*args):
        raise RuntimeError("clock gone")

    logging.getLogger("DeepCache").addHandler(records)
    try:
        outs = [call_unet(broken_open, f.host, f.forward) for _ in range(2)]
        run = new_run()
        run.begin_evaluation()
        run.times.stop = broken_stop
        assert torch.equal(one_call(run, f), torch.ones(1))  # the full output stands
    finally:
        logging.getLogger("DeepCache").removeHandler(records)
    assert all(torch.equal(o, torch.zeros(1)) for o in outs) and f.seen == ["host", "host", "full"]
    assert len([m for m in records.messages if "no stream" in m]) == 1
    assert "clock gone" in run.disabled_reason


def test_interrupts_pass_through():
    class Interrupted(Exception):
        pass

    run = new_run()
    run.begin_evaluation()
    with pytest.raises(Interrupted):
        one_call(run, Forwards(fail=Interrupted()), passthrough=(Interrupted,))
    assert run.disabled_reason is None


def test_a_full_forward_that_never_stores_turns_deepcache_off():
    run, f = new_run(), Forwards(store=False)
    run.begin_evaluation()
    assert torch.equal(one_call(run, f), torch.ones(1))  # its output stands
    assert "never reached the cached branch" in run.disabled_reason


@torch.no_grad()
def test_no_host_reads_and_no_fake_tensors_while_sampling():
    """Nothing but sampling on the sampling path: no value of a tensor is read into Python by
    the plugin (a device synchronisation on CUDA) and no fake or meta tensor reaches a module."""
    unet = tiny_unet()
    sampler = CoreSampler(unet, DeepCacheConfig(interval=3), 12)
    fakes = []
    with no_fake_or_meta_inputs(unet, fakes), HostReads() as reads:
        sampler.sample(torch.randn(2, 4, 8, 8), SIGMAS, torch.randn(2, 7, 24), heun=True)
    assert {m for _, m in sampler.calls} == {Mode.FULL, Mode.CACHED}
    assert reads.found == [] and fakes == []


def test_the_guards_do_catch_what_they_look_for():
    unet = tiny_unet()
    with torch.device("meta"):
        meta_x = torch.empty(1, 4, 8, 8)
    fakes = []
    with no_fake_or_meta_inputs(unet.input_blocks[0], fakes):
        unet.input_blocks[0](meta_x, None, None)
    assert fakes
    with HostReads() as reads:
        plan_run(DeepCacheConfig(), torch.tensor(SIGMAS))  # reads each sigma into Python, in core
    assert reads.found and "schedule.py" in reads.found[0]


def test_full_forward_through_call_unet_is_the_plain_forward():
    unet = tiny_unet()
    x, t, c = torch.randn(2, 4, 8, 8), torch.full((2,), 300.0), torch.randn(2, 7, 24)
    run = new_run()
    run.begin_evaluation()
    out = call_unet(lambda: open_call(run, ["a", "b"], x), lambda: unet(x, t, c),
                    lambda call: unet_forward(LdmOps(unet, t, c), x, call.depth, call.branch, deep=call.deep))
    assert torch.equal(out, unet(x, t, c))
