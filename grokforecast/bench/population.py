"""Trials per hour: one trial at a time against populations of K, with the roofline.

Each model is trained as ``K`` trials with their own learning rate, weight decay and data
fraction (drawn from the quickstart's search space): once one after another, as a sweep
worker trains one trial per process, and once as a :class:`Population` of ``K``. Both
evaluate every ``eval_every`` steps, as a sweep's trials do. The work per trial step is
counted by PyTorch's ``FlopCounterMode`` (forward and backward of one update, as each
trial alone or the population computes it); the machine's own rate is a dense float32
matmul timed in the same run, so "share of the roofline" is FLOP/s reached over FLOP/s
the machine's matmul reaches.

:func:`end_to_end` runs a study file's whole sweep, pruning included, one trial at a time
and then with a population, on the same trials in the same order, and says which grokked.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from grokforecast.training import TrainConfig, Trainer
from grokforecast.training.population import Population, training_state_bytes

if TYPE_CHECKING:
    from grokforecast.sweep.plan import SweepPlan

#: The models measured: the quickstart's, a small one where single trials are
#: overhead-bound, and a larger one.
MODELS: dict[str, dict] = {
    "quickstart (p = 59, hidden 256)": {"workload_options": {"p": 59}},
    "small (p = 23, hidden 64)": {"workload_options": {"p": 23, "embed_dim": 32, "hidden": 64}},
    "p = 97 (hidden 256)": {"workload_options": {"p": 97}},
}
#: A trial's budget when counting trials per hour: the quickstart's full_steps.
BUDGET_STEPS = 2000
#: Steps between evaluations, as a sweep's trials evaluate.
EVAL_EVERY = 10


@dataclass(frozen=True)
class Throughput:
    model: str
    population: int | None  # None: one trial at a time
    trial_steps_per_second: float
    flop_per_second: float
    bytes_per_trial: int
    #: The same trials trained one at a time (for a population: its K trials).
    alone_trial_steps_per_second: float

    @property
    def trials_per_hour(self) -> float:
        return 3600 * self.trial_steps_per_second / BUDGET_STEPS

    @property
    def speedup(self) -> float:
        return self.trial_steps_per_second / self.alone_trial_steps_per_second


def matmul_rate(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of this machine's dense float32 ``n x n`` matmul (the best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def configs(options: dict, k: int, steps: int, seed: int = 0) -> list[TrainConfig]:
    """``k`` trials of one model with hyperparameters drawn from the quickstart's space."""
    draw = random.Random(seed)
    return [
        TrainConfig(
            **options,
            steps=steps,
            eval_every=EVAL_EVERY,
            lr=10 ** draw.uniform(-3, -2.3),
            weight_decay=10 ** draw.uniform(-1.3, 0.5),
            data_fraction=draw.uniform(0.2, 0.7),
            seed=i,
            device="cpu",
        )
        for i in range(k)
    ]


def flops_per_step(config: TrainConfig) -> float:
    """Forward and backward FLOPs of one update of a ``config`` trial alone."""
    trainer = Trainer(config)
    return _counted_flops(lambda: trainer.train_step(config.lr))


def flops_per_trial_step(population: Population) -> float:
    """Forward and backward FLOPs of one update of ``population``, per member: a model may
    compute a stack another way than one copy (the embedding MLP's lookup), so a
    population's work is counted as it is done. The population must be evaluated at its
    current step (as after a run), so that the counted step holds no evaluation."""
    return _counted_flops(lambda: population.run(1, segment_ends=())) / len(population.occupied)


def _counted_flops(work: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        work()
    return float(counter.get_total_flops())


def measure(model: str, options: dict, populations: tuple[int, ...], steps: int) -> Iterator[Throughput]:
    """One at a time, then each population size, on the same ``max(populations)`` trials'
    settings; a population of K is compared with its own K trials one at a time.

    Every timing is the faster of two equal halves (a noisy machine only ever slows a
    run down), each a whole number of evaluation intervals: a lone trial's 20 steps (per
    100 of ``steps``), a population's ``steps`` after a 10-step warm-up.
    """
    warnings.filterwarnings("ignore", message="There is a performance drop")
    trials = configs(options, max(populations), steps)
    work = sum(flops_per_step(c) for c in trials) / len(trials)
    Trainer(trials[0]).run(until=5)  # warm-up
    half = EVAL_EVERY * max(1, steps // 100)
    seconds_per_step = []  # of each trial alone
    for config in trials:
        trainer = Trainer(config)
        seconds_per_step.append(min(_timed(trainer.run, trainer.step + half) for _ in range(2)) / half)
    alone = {k: k / sum(seconds_per_step[:k]) for k in (*populations, len(trials))}
    yield Throughput(
        model,
        None,
        alone[len(trials)],
        alone[len(trials)] * work,
        training_state_bytes(Trainer(trials[0])),
        alone[len(trials)],
    )
    for k in populations:
        population = Population(k)
        for config in trials[:k]:
            population.admit(Trainer(config))
        population.run(EVAL_EVERY)  # warm-up: the first stacked call allocates (and traces, under vmap)
        work_in_population = flops_per_trial_step(population)
        population.run(EVAL_EVERY - 1)  # back to a whole number of evaluation intervals
        half = EVAL_EVERY * max(1, (steps - EVAL_EVERY) // (2 * EVAL_EVERY))
        rate = k * half / min(_timed(population.run, half) for _ in range(2))
        yield Throughput(model, k, rate, rate * work_in_population, population.bytes_per_member(), alone[k])


def _timed(run: Callable[[int], object], argument: int) -> float:
    start = time.perf_counter()
    run(argument)
    return time.perf_counter() - start


def markdown_table(rows: list[Throughput], roofline: float) -> str:
    lines = [
        f"| model | trials at once | trial steps / s | trials per hour ({BUDGET_STEPS:,} steps) "
        "| x one at a time | GFLOP/s | share of the matmul roofline | training state per trial |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.population or '1 (one per process)'} | {row.trial_steps_per_second:,.0f} "
            f"| {row.trials_per_hour:,.0f} | {row.speedup:.2f} | {row.flop_per_second / 1e9:.1f} "
            f"| {row.flop_per_second / roofline:.0%} | {row.bytes_per_trial / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class SweepRun:
    """One end-to-end sweep of a study file: its wall time and which trials grokked."""

    population: int
    seconds: float
    grokked: tuple[bool, ...]

    @property
    def trials_per_hour(self) -> float:
        return 3600 * len(self.grokked) / self.seconds


def end_to_end(study_file: Path, population: int, workdir: Path) -> tuple[SweepRun, SweepRun]:
    """The study file's sweep (pruning included) one trial at a time, then the same trials,
    enqueued in the same order, with each worker training ``population`` at once.

    Each sweep's worker runs in a fresh process, as ``grokforecast sweep`` runs it (its
    start-up is timed too): a process that has trained on its main thread keeps an OpenMP
    team there, which slows a population's training thread (``sweep/populations.py``).
    """
    import contextlib
    import dataclasses
    import multiprocessing

    import optuna

    from grokforecast.sweep.plan import SweepPlan
    from grokforecast.sweep.study import create_study
    from grokforecast.sweep.summary import ran_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = []
    params: list[dict] = []
    study_file = study_file.resolve()  # before moving to the work directory
    with contextlib.chdir(workdir):
        for k in (1, population):
            plan = SweepPlan.load(study_file, f"sqlite:///{workdir / f'population-{k}.db'}")
            budget = plan.spec.budget.model_copy(update={"population": k})
            plan = dataclasses.replace(plan, spec=plan.spec.model_copy(update={"budget": budget}))
            study = create_study(plan)
            for trial_params in params:  # the second sweep runs the first one's trials, in order
                study.enqueue_trial(trial_params)
            worker = multiprocessing.get_context("spawn").Process(target=_sweep_worker, args=(plan,))
            start = time.perf_counter()
            worker.start()
            worker.join()
            seconds = time.perf_counter() - start
            if worker.exitcode != 0:
                raise RuntimeError(f"the sweep's worker (population {k}) exited with {worker.exitcode}")
            ran = ran_trials(optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url))
            params = params or [t.params for t in ran]
            runs.append(SweepRun(k, seconds, tuple(bool(t.user_attrs.get("grokked")) for t in ran)))
    return runs[0], runs[1]


def _sweep_worker(plan: SweepPlan) -> None:
    import optuna

    from grokforecast.backends.optuna.workers import quiet_interrupted_trials, run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_interrupted_trials()  # as the CLI: a thread's surplus trial ran nothing
    run_worker(plan)
