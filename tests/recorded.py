"""Recorded corpus runs fed to a stopper as grokforecast's sweeps report them live.

After every evaluation the sweep's trial has trained up to that step: the training loss
of the steps before it, every evaluation up to and at it. Ray Tune receives that as one
result (the dense training curves since the previous result); Optuna as intermediate
values at a stride, with the rest read from the trainer.
"""

from __future__ import annotations

from typing import Any

from grokforecast.records import RunRecord


def results(record: RunRecord, until: int | None = None) -> list[dict[str, Any]]:
    """The results grokforecast's trainable reports for ``record``: one per evaluation
    (up to step ``until``), with the dense training curves since the previous one."""
    curves = record.curves
    reported = []
    for index, step in enumerate(int(s) for s in curves.eval_steps):
        if until is not None and step > until:
            break
        previous = int(curves.eval_steps[index - 1]) if index else 0
        reported.append(
            {
                "step": step,
                "train_loss_interval": curves.train_loss[previous:step],
                "train_acc_interval": curves.train_acc[previous:step],
                "val_loss": curves.val_loss[index],
                "val_acc": curves.val_acc[index],
                "weight_norm": curves.weight_norm[index],
            }
        )
    return reported
