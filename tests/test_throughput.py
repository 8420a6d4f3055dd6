import dataclasses

import pytest
import torch

from grokforecast.bench.throughput import Overhead, PlainLoop
from grokforecast.training import TrainConfig, Trainer


@pytest.mark.parametrize("batch_size", [None, 16], ids=["full-batch", "mini-batch"])
def test_the_benchmarks_hand_written_loop_trains_and_evaluates_like_the_trainer(
    tiny_config: TrainConfig, batch_size: int | None
) -> None:
    config = dataclasses.replace(tiny_config, batch_size=batch_size, grokfast="ema")
    trainer, plain = Trainer(config), PlainLoop(Trainer(config), evaluate=True)
    trainer.run(until=30)
    plain(30)
    assert plain.step == trainer.step and len(plain.history) == 3  # steps 0, 10, 20
    for p, q in zip(trainer.model.parameters(), plain.trainer.model.parameters(), strict=True):
        assert torch.equal(p, q)
    curves = trainer.curves
    recorded = [curves.val_loss, curves.val_acc, curves.weight_norm]
    if batch_size:
        recorded.append(curves.train_set_acc)
    assert torch.allclose(torch.tensor(plain.history), torch.tensor(recorded).T[:3])


def test_the_overhead_is_the_median_ratio_with_an_interval_around_it() -> None:
    faster = [1.0, 1.0, 1.0, 1.0, 1.0]
    overhead = Overhead.of([1.02, 1.04, 1.05, 1.06, 1.90], faster)
    assert overhead.median == pytest.approx(0.05)  # the one slow round moves nothing
    assert 0.02 <= overhead.low <= overhead.median <= overhead.high <= 0.90
    assert Overhead.of([2.0, 2.0], [1.0, 1.0]) == Overhead(1.0, 1.0, 1.0)
