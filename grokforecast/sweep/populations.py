"""A worker's trials trained as one population: Optuna's threads, one stacked model.

With ``[budget] population = K`` a worker runs ``study.optimize(n_jobs=K)``: K threads,
each running one trial's :class:`~grokforecast.sweep.lifecycle.TrialLifecycle` with its
own Optuna trial, heartbeat, pruner calls, checkpoints and records, exactly as a lone
trial. Only the training of their segments is shared: each thread asks
:class:`SharedPopulation` to train its trainer to the end of its segment and waits, and
once every trial in the population is waiting, one of them trains them all together
(:class:`~grokforecast.training.population.Population`) as far as the nearest segment
end, hands back those whose segment ended (their state written into their trainer, ready
to report, checkpoint or snapshot) and trains on the rest. A trial that ends leaves its
slot to the next trial a thread asks Optuna for, so the population stays full until the
study is done. A killed worker leaves its trials RUNNING with stale heartbeats, as a lone
worker does, and they are retried from their checkpoints.

The population trains on a thread of its own, with the worker's intra-op threads, and
each trial's thread does its own torch work (building its trainer, checkpoints) on one
thread: once more threads run OpenMP teams than there are cores, OpenMP stops spinning
between parallel regions, and each of the many small regions of a stacked step then waits
for its threads to wake. In the trials' threads, a small model's population stepped 3-4x
slower than in a process's main thread (BENCHMARKS.md).

``population = "auto"`` measures, before the sweep starts, which size trains the study's
trials fastest on this device (:func:`choose_population`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import torch

from grokforecast.sweep.spec import StudySpec
from grokforecast.sweep.study import suggest
from grokforecast.training import RunStatus, TrainConfig, Trainer
from grokforecast.training.cpu_process import on_a_passing_thread, tune_for_training_on
from grokforecast.training.population import Population, training_state_bytes


def holds_populations(spec: StudySpec) -> bool:
    """Whether the sweep's workers train populations (``population`` is K > 1 or ``"auto"``)."""
    return spec.budget.population != 1


class SharedPopulation:
    """The :class:`~grokforecast.sweep.lifecycle.Segments` of the trials of one worker's
    threads: trained together, ``capacity`` at a time, on a training thread of their own
    (close it with :meth:`close`, or use the object as a context manager)."""

    def __init__(self, capacity: int) -> None:
        self.population = Population(capacity)
        self._turn = threading.Condition()
        self._slots: dict[int, int] = {}  # id(trainer) -> its slot
        self._wanted: dict[int, int] = {}  # slot -> the step its segment ends at
        self._ended: dict[int, RunStatus] = {}  # slot -> how its segment ended
        self._intra_op_threads = torch.get_num_threads()  # the worker's, for the training thread
        self._training = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokforecast-population")

    def __enter__(self) -> SharedPopulation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the training thread (after the segment it is training, if any), and give
        threads started later the worker's intra-op threads again (:meth:`enter` set 1)."""
        self._training.shutdown()
        torch.set_num_threads(self._intra_op_threads)

    def enter(self) -> None:
        """A trial's thread begins: its own torch work runs on one thread (module docstring)."""
        torch.set_num_threads(1)

    def run(self, trainer: Trainer, until: int) -> RunStatus:
        with self._turn:
            slot = self._slot_of(trainer)
            self._wanted[slot] = until
            self._turn.notify_all()
            while slot in self._wanted:
                if set(self._wanted) == set(self.population.occupied):  # every trial waits
                    self._train()
                else:
                    self._turn.wait()
            return self._ended.pop(slot)

    def leave(self, trainer: Trainer) -> None:
        with self._turn:
            slot = self._slots.pop(id(trainer), None)
            if slot is not None:
                self.population.release(slot)
                self._wanted.pop(slot, None)
                self._ended.pop(slot, None)
            self._turn.notify_all()  # the others may all be waiting now, or a slot is free

    def _slot_of(self, trainer: Trainer) -> int:
        if id(trainer) not in self._slots:
            while not self.population.free:
                self._turn.wait()
            self._slots[id(trainer)] = self.population.admit(trainer)
        return self._slots[id(trainer)]

    def _train(self) -> None:
        """Train every waiting trial to the nearest segment end; settle those that reached theirs."""
        population = self.population
        left = {slot: until - population.member(slot).step for slot, until in self._wanted.items()}
        steps = max(0, min(left.values()))
        ending = [slot for slot, n in left.items() if n <= steps]
        settled = self._training.submit(self._run, dict.fromkeys(left, steps), ending).result()
        for slot, how in settled.items():
            self._ended[slot] = how
            del self._wanted[slot]
        self._turn.notify_all()

    def _run(self, steps: Mapping[int, int], ending: list[int]) -> dict[int, RunStatus]:
        """On the training thread: train, and export the slots whose segment ended or that
        diverged (their state written into their trainers); returns how those ended."""
        # Set at every call: a trial's thread setting 1 also sets it for threads not yet started.
        torch.set_num_threads(self._intra_op_threads)
        tune_for_training_on(self.population.member(next(iter(steps))).device)  # every member's
        status = self.population.run(steps, segment_ends=ending)
        settled = {slot: how for slot, how in status.items() if how is RunStatus.DIVERGED or slot in ending}
        for slot in settled:
            self.population.export(slot)
        return settled


#: Population sizes ``population = "auto"`` measures, smallest first.
AUTO_SIZES = (2, 4, 8, 16, 32, 64)
#: How much faster than one trial at a time a population must train to be chosen.
AUTO_MARGIN = 1.1
#: The share of the device's free memory the population's training state may take.
AUTO_MEMORY_SHARE = 0.25
#: Steps timed per candidate, rounded to a whole number of evaluation intervals (one at
#: least).
AUTO_STEPS = 10


def choose_population(spec: StudySpec) -> tuple[int, str]:
    """``population = "auto"``: the population size that trains this study's trials fastest
    on this device, measured on a few trials drawn from its search space (one trial at a
    time wherever no population is :data:`AUTO_MARGIN` faster), and a line saying why.

    Each candidate is timed over whole evaluation intervals after an untimed one (the
    first allocations, the evaluation at step 0), so that it evaluates once per
    ``eval_every`` steps, as a sweep's trials do: a window that also held the step-0
    evaluation weighed evaluations double, and a population evaluates its members at once.

    It measures on a thread that ends with the measurement
    (:func:`~grokforecast.training.cpu_process.on_a_passing_thread`), with the caller's
    intra-op threads.
    """
    return on_a_passing_thread(_measure_population, spec, torch.get_num_threads())


def _measure_population(spec: StudySpec, threads: int) -> tuple[int, str]:
    torch.set_num_threads(threads)
    configs = _drawn_configs(spec, max(AUTO_SIZES))
    warm_up = configs[0].eval_every  # the same in every trial of a study
    window = warm_up * max(1, round(AUTO_STEPS / warm_up))
    lone = [Trainer(config) for config in configs[:2]]
    for trainer in lone:
        trainer.run(until=warm_up)
    start = time.perf_counter()
    for trainer in lone:
        trainer.run(until=warm_up + window)
    alone = len(lone) * window / (time.perf_counter() - start)
    state = training_state_bytes(lone[0])
    room = AUTO_MEMORY_SHARE * _free_memory(lone[0].device)
    best, best_rate = 1, alone
    for k in (k for k in AUTO_SIZES if k * state <= room):
        population = Population(k)
        for config in configs[:k]:
            population.admit(Trainer(config))
        population.run(warm_up)
        start = time.perf_counter()
        population.run(window)
        rate = k * window / (time.perf_counter() - start)
        if rate <= best_rate:
            break  # larger ones pad and wait more still
        best, best_rate = k, rate
    if best_rate < AUTO_MARGIN * alone:
        best, best_rate = 1, alone
    why = (
        f"population auto: {best} trial(s) at once, {best_rate:,.0f} trial steps/s "
        f"(one at a time: {alone:,.0f}, measured on {lone[0].device})"
    )
    return best, why


def _drawn_configs(spec: StudySpec, n: int) -> list[TrainConfig]:
    """``n`` trials' configurations drawn at random from the study's search space."""
    import optuna

    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for _ in range(n):
        trial = draws.ask()
        configs.append(spec.train_config(suggest(trial, spec)))
        draws.tell(trial, 0.0)
    return configs


def _free_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
