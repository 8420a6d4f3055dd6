import numpy as np

from grokforecast.curves import Curves, grok_times
from grokforecast.history import History


def _curves(**series) -> Curves:
    return Curves(**series)


def test_t2_from_per_step_accuracy_in_full_batch_and_t4_from_evaluations() -> None:
    curves = _curves(
        train_loss=[1.0] * 6,
        train_acc=[0.2, 0.9, 1.0, 1.0, 1.0, 1.0],
        eval_steps=[0, 2, 4, 6],
        val_acc=[0.0, 0.1, 0.96, 1.0],
        val_loss=[1.0] * 4,
        weight_norm=[1.0] * 4,
    )
    times = grok_times(curves, threshold=0.95)
    assert (times.t2, times.t4, times.grokked, times.delay) == (2, 4, True, 2)


def test_mini_batch_t2_comes_from_the_training_set_evaluation() -> None:
    curves = _curves(
        train_loss=[1.0] * 4,
        train_acc=[1.0] * 4,
        eval_steps=[0, 2, 4],
        val_acc=[0.0, 0.0, 0.5],
        val_loss=[1.0] * 3,
        weight_norm=[1.0] * 3,
        train_set_acc=[0.5, 0.99, 1.0],
    )
    times = grok_times(curves)
    assert (times.t2, times.t4, times.grokked, times.delay) == (4, None, False, None)


def test_history_is_cut_at_the_probe_step() -> None:
    curves = _curves(
        train_loss=[3.0, 2.0, 1.0, 0.5],
        train_acc=[0.0, 0.5, 1.0, 1.0],
        eval_steps=[0, 2, 4],
        val_loss=[3.0, 2.5, 2.0],
        val_acc=[0.0, 0.0, 0.1],
        weight_norm=[5.0, 4.0, 3.0],
    )
    history = History.from_curves(curves, until=2)
    np.testing.assert_array_equal(history["train_loss"], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(history["val_loss_steps"], [0, 2])
    np.testing.assert_array_equal(history["weight_norm"], [5.0, 4.0])
