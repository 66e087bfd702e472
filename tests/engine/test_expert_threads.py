"""The sparse path's per-expert loops on one thread per core: same result, every time."""

import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
import torch

from emoe_cli.engine.expert_threads import run_each, runs, thread_count
from tests.engine.test_dispatch import D, _assert_same, _layer


@pytest.mark.parametrize("sizes, count", [
    ([5, 5, 5, 5], 2), ([1, 1, 10], 2), ([3] * 6, 4), ([1] * 7, 3), ([10], 4),
    ([2000, 1, 1, 1, 1, 1500, 30, 700, 900, 5], 2), ([], 2)])
def test_runs_are_contiguous_cover_every_expert_and_differ_by_at_most_one_expert(sizes, count):
    parts = runs(sizes, count)
    assert [i for part in parts for i in part] == list(range(len(sizes)))
    assert len(parts) <= count and all(len(part) for part in parts)
    loads = [sum(sizes[i] for i in part) for part in parts]
    if len(loads) > 1:
        assert max(loads) - min(loads) <= max(sizes)


def test_parts_run_at_once_each_with_one_intra_op_thread_and_no_autograd():
    threads = torch.get_num_threads()
    together = threading.Barrier(3, timeout=30)  # broken unless all three parts run at once

    def task(index, part):
        together.wait()
        return index, list(part), threading.get_ident(), torch.get_num_threads(), \
            torch.is_grad_enabled()

    seen = run_each(task, [range(0, 2), range(2, 3), range(3, 5)])
    assert [(index, part) for index, part, *_ in seen] == [(0, [0, 1]), (1, [2]), (2, [3, 4])]
    assert threading.get_ident() not in {ident for _, _, ident, _, _ in seen}
    assert {(count, grad) for *_, count, grad in seen} == {(1, False)}
    assert torch.get_num_threads() == threads  # the caller's setting is left as it was


def test_one_part_runs_on_the_calling_thread():
    assert run_each(lambda index, part: threading.get_ident(), [range(3)]) == [
        threading.get_ident()]


def test_an_error_in_one_part_is_raised_once_every_part_has_stopped():
    finished = []

    def task(index, part):
        if index == 0:
            raise ValueError("part 0 failed")
        finished.append(index)

    with pytest.raises(ValueError, match="part 0 failed"):
        run_each(task, [range(1), range(1, 2), range(2, 3)])
    assert sorted(finished) == [1, 2]


def _sparse_layer():
    layer = _layer(gated=False, bias=True, weighted=False, top_k=3)
    layer.execution = "sparse"
    return layer


@pytest.fixture
def three_threads(monkeypatch, gathered):
    """The sparse path gathers every pair and cuts its experts into three runs, whatever
    this machine has; returns the (threads, pairs) of each gathered forward and backward."""
    monkeypatch.setattr("emoe_cli.engine.dispatch.thread_count", lambda device: 3)
    return gathered


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
def test_experts_on_several_threads_give_the_masked_result(gated, weighted, three_threads):
    layer = _layer(gated, bias=True, weighted=weighted, top_k=3)
    _assert_same(layer, torch.randn(60, D, generator=torch.Generator().manual_seed(2)))
    assert three_threads == [(3, 60 * 3)] * 2


@pytest.mark.parametrize("threads", [1, 3])
def test_inference_mode_then_no_grad_give_the_same_result(threads, monkeypatch):
    """Tensors made in inference mode can only be written in it: the threads follow the
    caller's mode, and the buffers kept between calls are made outside it."""
    monkeypatch.setattr("emoe_cli.engine.dispatch.thread_count", lambda device: threads)
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: 1.0)
    layer = _sparse_layer()
    # More tokens than other tests use, so that the kept buffers are made in this call.
    x = torch.randn(5000 + threads, D, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        inferred = layer(x)
    with torch.no_grad():
        assert torch.equal(inferred, layer(x))


def test_several_threads_give_the_same_bits_every_time(three_threads):
    layer = _sparse_layer()
    x = torch.randn(200, D, generator=torch.Generator().manual_seed(3))
    outputs, grads = [], []
    for _ in range(5):
        xg = x.clone().requires_grad_()
        outputs.append(layer(xg))
        outputs[-1].sum().backward()
        grads.append(xg.grad)
    assert all(torch.equal(outputs[0], y) and torch.equal(grads[0], g)
               for y, g in zip(outputs, grads))


def _sparse_in_child(queue) -> None:
    torch.set_num_threads(1)  # as data loader workers do: GNU OpenMP cannot fork its threads
    layer = _sparse_layer()
    with torch.no_grad():
        queue.put(layer(torch.randn(60, D, generator=torch.Generator().manual_seed(4))).sum()
                  .item())


def test_a_forked_child_starts_its_own_threads(three_threads):
    """Data loader workers are forked; a fork copies no threads, so a child that ran the
    sparse path on its parent's pool would wait forever."""
    layer = _sparse_layer()
    with torch.no_grad():  # the parent's pool is started
        layer(torch.randn(60, D, generator=torch.Generator().manual_seed(4)))
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    child = context.Process(target=_sparse_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert isinstance(queue.get(), float)


def test_the_loops_stay_on_the_calling_thread_where_openmp_threads_spin_or_off_cpu(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert thread_count(torch.device("cpu")) == torch.get_num_threads()
    assert thread_count(torch.device("meta")) == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert thread_count(torch.device("cpu")) == 1


@pytest.mark.parametrize("chosen, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_emoe_run_lets_idle_openmp_threads_sleep_unless_the_user_chose(chosen, expected):
    """Set before torch loads: OpenMP reads the variable only then."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if chosen:
        env["OMP_WAIT_POLICY"] = chosen
    code = ("import os, sys; import emoe_cli.cli.train; "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [expected, "False"]  # set on import, and torch loads only once a job runs


def test_beyond_max_threads_each_expert_thread_gets_several_intra_op_threads(monkeypatch):
    monkeypatch.setattr("emoe_cli.engine.expert_threads.MAX_THREADS", 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert thread_count(torch.device("cpu")) == 2
        together = threading.Barrier(2, timeout=30)

        def task(index, part):
            together.wait()
            return torch.get_num_threads()

        assert run_each(task, [range(1), range(1, 2)]) == [2, 2]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
