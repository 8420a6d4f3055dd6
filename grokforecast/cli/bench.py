"""``grokforecast bench ...``: the benchmark commands behind BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grokforecast.bench.live_pruners import PRUNERS as LIVE_PRUNERS
from grokforecast.cli.options import train_config_from_cli, train_config_options

if TYPE_CHECKING:
    from grokforecast.bench.backends import BackendRun


def probe_fractions_option(default: tuple[float, ...]) -> Callable:
    """``--probe``: the probe lengths to score, as fractions of the full run."""
    return click.option(
        "--probe",
        "fractions",
        multiple=True,
        type=float,
        default=default,
        show_default=True,
        help="Probe length as a fraction of the full run (repeatable).",
    )


def corpora_option(what: str) -> Callable:
    """``--corpus``: shipped corpora by name or folders of run records (``grokforecast
    corpus --out``), repeatable; none given means every shipped corpus, by name."""
    return click.option(
        "--corpus",
        "corpora",
        multiple=True,
        metavar="NAME_OR_DIR",
        callback=_every_shipped_corpus_if_none,
        help=f"Corpus to {what} (repeatable) [default: every shipped corpus].",
    )


def _every_shipped_corpus_if_none(_ctx: click.Context, _param: click.Parameter, corpora: tuple) -> tuple:
    from grokforecast.corpus import shipped_corpus_names

    return corpora or tuple(shipped_corpus_names())


@click.group()
def bench() -> None:
    """Measure grokforecast; the numbers go into BENCHMARKS.md."""


@bench.command("trainer")
@train_config_options
@click.option(
    "--timed-steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Steps per round for each loop, rounded up to a multiple of --eval-every.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=2),
    default=40,
    show_default=True,
    help="Rounds in which the loops take turns; the median of the per-round ratios is the overhead.",
)
def trainer_throughput(timed_steps: int, rounds: int, **settings) -> None:
    """Steps per second of the trainer against plain PyTorch loops of the same model.

    The plain loop trains and nothing else; the evaluating loop also evaluates every
    --eval-every steps, as a hand-written loop would. The loop overhead (trainer against
    the evaluating loop) is what grokforecast's bookkeeping costs.
    """
    from grokforecast.bench.throughput import measure_throughput

    config = train_config_from_cli(settings)
    result = measure_throughput(config, timed_steps, rounds)
    click.echo(_machine())
    click.echo(
        f"workload {config.workload} {config.workload_options or ''} batch "
        f"{config.batch_size or 'full'}, grokfast {config.grokfast}, eval_every {config.eval_every}"
    )
    rates = (
        result.plain_steps_per_second,
        result.evaluating_steps_per_second,
        result.trainer_steps_per_second,
    )
    for name, rate, faults in zip(
        ("plain loop", "evaluating loop", "trainer"), rates, result.page_faults_per_step, strict=True
    ):
        click.echo(f"{name:<18}{rate:11.1f} steps/s  {faults:8.1f} page faults/step")
    for name, overhead in (
        ("loop overhead", result.loop_overhead),
        ("total overhead", result.total_overhead),
    ):
        click.echo(
            f"{name:<18}{100 * overhead.median:+8.1f} %  (median of {rounds} rounds of "
            f"{result.steps_per_round} steps; 95 % interval "
            f"{100 * overhead.low:+.1f} % to {100 * overhead.high:+.1f} %)"
        )


@bench.command("grokfast")
@train_config_options
def grokfast_speedup(**settings) -> None:
    """Steps to grok (t4) of one configuration without a filter, with EMA and with MA.

    The --grokfast flag is ignored: all three filters run, each to --steps.
    """
    import dataclasses

    from grokforecast.training import Trainer

    base = train_config_from_cli(settings)
    click.echo(
        f"workload {base.workload} {base.workload_options or ''} lr {base.lr:g} wd {base.weight_decay:g} "
        f"r {base.data_fraction:g} init_scale {base.init_scale:g} batch {base.batch_size or 'full'}"
    )
    click.echo(f"{'filter':<8} {'t2':>7} {'t4':>7} {'final val acc':>14}")
    for kind in ("none", "ema", "ma"):
        trainer = Trainer(dataclasses.replace(base, grokfast=kind))
        trainer.run()
        summary = trainer.summary()
        t4 = summary["t4"] if summary["t4"] is not None else f">{base.steps}"
        click.echo(f"{kind:<8} {summary['t2']!s:>7} {t4!s:>7} {summary['final_val_acc']:>14.3f}")


@bench.command("forecast")
@corpora_option("evaluate on")
@probe_fractions_option((0.025, 0.05, 0.1))
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Shuffles of the held-out-cell folds; their scores are averaged.",
)
@click.option(
    "--evaluations",
    type=click.IntRange(min=2),
    help="Score runs as if evaluated only this many times by the probe (once an epoch, say) "
    "[default: every recorded evaluation].",
)
@click.option(
    "--swept",
    type=click.Choice(["lr,weight_decay", "data_fraction"]),
    help="Score as studies that sweep only these hyperparameters: each corpus cut into groups "
    "in which the others are fixed, the forecaster not told them [default: every run of a "
    "corpus together, all three given].",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the markdown table to this file.",
)
def forecast(
    corpora: tuple[str, ...],
    fractions: tuple[float, ...],
    repeats: int,
    evaluations: int | None,
    swept: str | None,
    output: Path | None,
) -> None:
    """ROC AUC, recall at 10 % FPR and calibration of the forecaster on held-out runs."""
    from grokforecast.bench.forecast_eval import evaluate, markdown_table
    from grokforecast.corpus import load_corpus

    scores = evaluate(
        load_corpus(*corpora),
        fractions,
        repeats=repeats,
        evaluations=evaluations,
        swept=tuple(swept.split(",")) if swept else None,
    )
    table = markdown_table(scores)
    click.echo(table)
    if output is not None:
        output.write_text(table + "\n")


@bench.command("sweep")
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sweep_overhead(study_file: Path) -> None:
    """Wall time of a sweep against the same trainings in a bare loop (orchestration overhead)."""
    import tempfile

    from grokforecast.bench.orchestration import measure_orchestration

    with tempfile.TemporaryDirectory(prefix="grokforecast-bench-") as workdir:
        result = measure_orchestration(study_file, Path(workdir))
    click.echo(_machine())
    click.echo(f"{result.trials} trials, {result.steps:,} steps trained")
    click.echo(f"sweep       {result.sweep_seconds:7.1f} s")
    click.echo(f"bare loop   {result.bare_seconds:7.1f} s")
    click.echo(f"ratio       {result.ratio:7.3f}")


@bench.command("backends")
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def backends(study_file: Path) -> None:
    """The study on the Optuna backend and on the Ray backend, one after the other."""
    import tempfile

    from grokforecast.bench.backends import ray_startup_seconds, run_backend

    startup = ray_startup_seconds()
    runs = []
    for backend in ("optuna", "ray"):
        with tempfile.TemporaryDirectory(prefix=f"grokforecast-bench-{backend}-") as workdir:
            runs.append(run_backend(study_file, Path(workdir), backend))
    click.echo(_machine())
    _runs_table(runs, "backend")
    click.echo(f"Ray local runtime start-up: {startup:.1f} s (part of the Ray wall time)")


@bench.command("pruners")
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--pruner",
    "names",
    multiple=True,
    type=click.Choice(list(LIVE_PRUNERS)),
    help="A variant to run (repeatable) [default: all].",
)
@click.option(
    "--keep",
    "keep_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep each variant's study database in a new folder of this one (DIR/<variant>/study.db), "
    "for `grokforecast report` or `dashboard` [default: delete them].",
)
def pruners(study_file: Path, names: tuple[str, ...], keep_dir: Path | None) -> None:
    """The study trained live with the HjorthPruner, Optuna's MedianPruner and no pruning.

    With "no pruning" among them and a sampler that draws the same trials whatever is
    pruned (random, qmc or grid, seeded), the "found" column counts the grokkers of the
    unpruned run that each pruner also trained until they grokked.
    """
    import tempfile

    from grokforecast.bench.live_pruners import run_pruner, variant_folder

    chosen = names or tuple(LIVE_PRUNERS)
    if keep_dir is not None:
        taken = [str(folder) for folder in (variant_folder(keep_dir, n) for n in chosen) if folder.exists()]
        if taken:
            raise click.UsageError(f"--keep: {', '.join(taken)} exists already; name a new folder")
    runs = []
    for name in chosen:
        if keep_dir is None:
            with tempfile.TemporaryDirectory(prefix="grokforecast-bench-pruners-") as workdir:
                runs.append(run_pruner(study_file, Path(workdir), name))
        else:
            workdir = variant_folder(keep_dir, name)
            workdir.mkdir(parents=True)
            runs.append(run_pruner(study_file, workdir, name))
    click.echo(_machine())
    _runs_table(runs, "pruner")
    unpruned = next((run for run in runs if run.backend == "no pruning"), None)
    if unpruned is not None:
        for run in runs:
            found = len(run.grokked_params & unpruned.grokked_params)
            click.echo(f"{run.backend}: found {found} of the {len(unpruned.grokked_params)} grokkers")


def _machine() -> str:
    """The line every benchmark starts with: what it ran on."""
    import torch

    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )


def _runs_table(runs: list[BackendRun], label: str) -> None:
    """Wall time, trials and compute of whole sweeps, one line each."""
    click.echo(
        f"{label:13} {'wall':>8} {'finished':>9} {'pruned':>7} {'grokked':>8} {'steps':>8} {'best':>7}"
    )
    for run in runs:
        best = "-" if run.best_value is None else f"{run.best_value:.4f}"
        click.echo(
            f"{run.backend:13} {run.seconds:7.1f}s {run.finished:9d} {run.pruned:7d} {run.grokked:8d} "
            f"{run.steps:8,d} {best:>7}"
        )


@bench.command("tune-schedulers")
@click.option("--corpus", "corpora", multiple=True, default=("mlp_add59",), show_default=True)
@click.option("--probe-fraction", type=float, default=0.1, show_default=True)
def tune_schedulers(corpora: tuple[str, ...], probe_fraction: float) -> None:
    """ASHA against the GrokForecastScheduler on replayed corpus runs (Ray Tune)."""
    from grokforecast.bench.tune_replay import compare_on_tune
    from grokforecast.corpus import load_corpus

    header = f"{'corpus':20} {'stopper':40} {'found':>8} {'recall':>7} {'steps':>9}"
    click.echo(f"{header} {'x unstopped':>11} {'x oracle':>9}")
    for corpus in corpora:
        for o in compare_on_tune(load_corpus(corpus), probe_fraction):
            click.echo(
                f"{corpus:20} {o.stopper:40} {o.found:>3}/{o.grokking:<4} {o.recall:7.2f} {o.steps:9,d} "
                f"{o.steps / o.steps_unpruned:11.2f} {o.steps / o.steps_oracle:9.2f}"
            )


@bench.command("dashboard")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--steps", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--storage", metavar="URL", help="Database to write the study to [default: a temporary SQLite file]."
)
def dashboard_load(n_trials: int, steps: int, repeats: int, storage: str | None) -> None:
    """Time the dashboard's study page on a large synthetic study."""
    import statistics
    import tempfile
    import time
    import uuid

    from grokforecast.bench.dashboard_load import build_large_study, time_study_page, time_trial_reads

    with tempfile.TemporaryDirectory(prefix="grokforecast-bench-dashboard-") as workdir:
        url = storage or f"sqlite:///{workdir}/dashboard.db"
        name = f"bench-dashboard-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        points = build_large_study(url, name, n_trials, steps)
        click.echo(
            f"{n_trials} trials, {points:,} curve points written in {time.perf_counter() - started:.0f} s"
        )
        page, api, size = time_study_page(url, name, repeats)
        columns, through_optuna = time_trial_reads(url, name, repeats)
    click.echo(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    click.echo(
        f"study page   median {statistics.median(page):.2f} s  max {max(page):.2f} s  ({size / 1e6:.1f} MB)"
    )
    click.echo(f"refresh API  median {statistics.median(api):.2f} s  max {max(api):.2f} s")
    click.echo(
        f"trials read  median {statistics.median(columns):.3f} s column-wise (the page), "
        f"{statistics.median(through_optuna):.3f} s through Optuna's get_trials (baseline)"
    )


@bench.command("faults")
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--storage",
    "storages",
    multiple=True,
    metavar="URL",
    help="Study database to run on (repeatable) [default: a fresh SQLite file].",
)
@click.option("--workers", "worker_counts", multiple=True, type=click.IntRange(min=1), default=(1, 2, 3))
@click.option(
    "--kills", type=click.IntRange(min=0), default=3, show_default=True, help="SIGKILLs per campaign."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the kill times and targets.")
def faults(
    study_file: Path, storages: tuple[str, ...], worker_counts: tuple[int, ...], kills: int, seed: int
) -> None:
    """SIGKILL the sweep of STUDY_FILE again and again, resume it, and count what was lost.

    One campaign per storage and worker count: each of --kills rounds starts a resume with
    that many workers and kills, a few seconds in, the whole sweep or one worker; then the
    study is resumed to the end and read back.
    """
    import re
    import tempfile

    import optuna

    from grokforecast.bench.faults import run_campaign
    from grokforecast.sweep.plan import SweepPlan
    from grokforecast.sweep.study import create_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    click.echo(_machine())
    click.echo(
        "| storage | workers | kills (one worker) | finished / target | left RUNNING | parameter sets run "
        "twice | curves with a step missing or doubled | trials interrupted | continued from a checkpoint "
        "| steps trained again (bound) / needed |"
    )
    click.echo("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="grokforecast-faults-") as workdir:
        for storage in storages or (f"sqlite:///{Path(workdir) / 'faults.db'}",):
            for workers in worker_counts:
                name = f"faults-{workers}-{seed}-{os.getpid()}-{len(os.listdir(workdir))}"
                text = re.sub(r"(?m)^name\s*=.*$", f'name = "{name}"', study_file.read_text())
                spec_path = Path(workdir) / f"{name}.toml"
                spec_path.write_text(text)
                plan = SweepPlan.load(spec_path, storage)
                create_study(plan)
                r = run_campaign(plan, workers, kills, seed + workers)
                click.echo(
                    f"| {storage.split(':')[0].split('+')[0]} | {workers} | {r.kills} ({r.worker_kills}) | "
                    f"{r.finished} / {r.target} | {r.running} | {r.repeated} | {r.curve_faults} | "
                    f"{r.interrupted} | {r.continued} | {r.steps_retrained} "
                    f"({r.interrupted * r.checkpoint_every}) / {r.steps_needed} |"
                )


@bench.command("cluster")
@click.option(
    "--study",
    default="studies/cluster.toml",
    show_default=True,
    help="Study file the worker containers share (a path inside the checkout).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the steps the kills wait for.")
@click.option(
    "--kills/--no-kills",
    default=True,
    show_default=True,
    help="Kill and stop a worker (else time the sweep alone).",
)
def cluster(study: str, seed: int, kills: bool) -> None:
    """Build the compose cluster's images, sweep across two worker containers, kill one
    (SIGKILL) and stop another (SIGTERM), resume, and check the study against the same
    trials run on this machine. Run from the checkout; needs docker or podman."""
    import optuna

    from grokforecast.bench.cluster import run_cluster

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    click.echo(_machine())
    run = run_cluster(Path.cwd(), study, seed, kills)
    r = run.study["report"]
    click.echo(f"engine: {run.engine}; kills: {'; '.join(run.kills) or 'none'}")
    click.echo("| images built | cluster started | sweep on the cluster | same trials on the host |")
    click.echo("| --- | --- | --- | --- |")
    seconds = (run.build_seconds, run.start_seconds, run.sweep_seconds, run.host_seconds)
    click.echo("| " + " | ".join(f"{s:.0f} s" for s in seconds) + " |")
    click.echo(
        f"finished {r['finished']} / {r['target']}, RUNNING {r['running']}, parameter sets run twice "
        f"{r['repeated']}, curves with a step missing or doubled {r['curve_faults']}, trials "
        f"interrupted {r['interrupted']} (continued from a checkpoint {r['continued']}), steps "
        f"trained again {r['steps_retrained']} (bound {r['interrupted'] * r['checkpoint_every']}), "
        f"decisions differing from the host's {len(run.decisions_differing)} of {len(run.study['trials'])}"
    )
    for stop in run.study["interruptions"]:
        retried = stop["retried_as"]
        resumed = stop["resumed_from"]
        click.echo(
            f"trial {stop['trial']} interrupted: "
            + (
                "not retried (the study reached its target first)"
                if retried is None
                else f"retried as {retried}, "
            )
            + ("" if retried is None else f"from step {resumed['step']}" if resumed else "from step 0")
        )
    if not run.intact:
        raise SystemExit(1)


@bench.command("inside")
@click.option(
    "--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Timed runs per view."
)
def inside(repeats: int) -> None:
    """Seconds per snapshot of each view inside a trial, on the shipped workloads."""
    from grokforecast.bench.inside_timing import time_views

    click.echo(_machine())
    table = time_views(repeats=repeats)
    names = list(next(iter(table.values())))
    click.echo("| workload | " + " | ".join(names) + " |")
    click.echo("| --- " * (len(names) + 1) + "|")
    for label, seconds in table.items():
        click.echo(f"| {label} | " + " | ".join(f"{seconds[name] * 1000:.1f} ms" for name in names) + " |")


@bench.command("probe-state")
@probe_fractions_option((0.05, 0.1))
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("runs/probe-state.json"),
    show_default=True,
    help="Where the measured states are kept between runs of this command.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Training processes."
)
def probe_state(fractions: tuple[float, ...], cache: Path, workers: int) -> None:
    """Whether the model's state at the probe (embedding spectrum, sharpness, layer norms)
    improves the forecast on held-out model families."""
    from grokforecast.bench.probe_state import REPLAY_TOLERANCE, evaluate, family_table, measure_corpus
    from grokforecast.corpus import load_corpus
    from grokforecast.forecast.fitting import usable_records

    click.echo(_machine())
    records = usable_records(load_corpus())
    states = measure_corpus(records, fractions, cache, workers)
    replayed = [r for r in records if states[r.run_id].replay_error <= REPLAY_TOLERANCE]
    worst = max(s.replay_error for s in states.values())
    click.echo(
        f"{len(replayed)} of {len(records)} runs replayed to their recorded training loss "
        f"(largest relative difference {worst:.1e}, tolerance {REPLAY_TOLERANCE:g}); scored on those"
    )
    click.echo(family_table(evaluate(replayed, states, fractions), replayed))


@bench.command("replay")
@corpora_option("replay")
@click.option("--probe-fraction", type=click.FloatRange(0.01, 0.5), default=0.1, show_default=True)
@click.option(
    "--orders", type=click.IntRange(min=1), default=3, show_default=True, help="Trial orders per corpus."
)
@click.option("--ray/--no-ray", "with_ray", default=False, show_default=True, help="Add Ray Tune's ASHA.")
@click.option(
    "--figure",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the recall-against-compute figure to this HTML file.",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
def replay(
    corpora: tuple[str, ...],
    probe_fraction: float,
    orders: int,
    with_ray: bool,
    figure: Path | None,
    output: Path | None,
) -> None:
    """Replay recorded runs through HjorthPruner, Optuna's pruners and an oracle; print the table."""
    import logging
    import warnings

    import optuna

    from grokforecast.bench.replay import compare
    from grokforecast.bench.replay_report import family_table, markdown_table, write_figure
    from grokforecast.corpus import load_corpus

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("grokforecast").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # PatientPruner
    outcomes = compare({name: load_corpus(name) for name in corpora}, probe_fraction, orders)
    if with_ray:
        from grokforecast.bench.tune_replay import compare_on_tune

        for name in corpora:
            outcomes += compare_on_tune(load_corpus(name), probe_fraction, include=("asha",), corpus=name)
    table = markdown_table(outcomes) + "\n\n" + family_table(outcomes)
    click.echo(f"machine: {platform.machine()}, {os.cpu_count()} cores; {orders} trial orders per corpus")
    click.echo(table)
    if output is not None:
        output.write_text(table + "\n")
    if figure is not None:
        click.echo(f"figure -> {write_figure(outcomes, figure)}")


@bench.command("grok-time")
@corpora_option("forecast grok steps on")
@click.option(
    "--orders", type=click.IntRange(min=1), default=5, show_default=True, help="Trial orders per corpus."
)
def grok_time(corpora: tuple[str, ...], orders: int) -> None:
    """Forecast error of each kept run's grok step, per corpus, as a study would learn it."""
    from grokforecast.bench.grok_time_eval import markdown_table, score_corpus
    from grokforecast.corpus import load_corpus

    scores = [score_corpus(name, load_corpus(name), orders) for name in corpora]
    click.echo(f"machine: {platform.machine()}, {os.cpu_count()} cores; {orders} trial orders per corpus")
    click.echo(markdown_table(scores))


@bench.command("population")
@click.option(
    "--population",
    "populations",
    multiple=True,
    type=click.IntRange(min=1),
    default=(4, 16, 64),
    show_default=True,
    help="Population size K to measure (repeatable).",
)
@click.option("--steps", type=click.IntRange(min=20), default=100, show_default=True, help="Steps per trial.")
@click.option(
    "--sweep",
    "study_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default="studies/quickstart.toml",
    show_default=True,
    help="Study file to sweep end to end, one trial at a time and with a population.",
)
@click.option(
    "--sweep-population",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Population of the end-to-end sweep (0: no end-to-end sweep).",
)
def population(populations: tuple[int, ...], steps: int, study_file: Path, sweep_population: int) -> None:
    """Trials per hour one at a time against populations of K, with FLOP/s against the
    roofline; then a study's sweep end to end, one at a time and with a population."""
    import tempfile

    from grokforecast.bench.population import MODELS, end_to_end, markdown_table, matmul_rate, measure

    roofline = matmul_rate()
    rows = [row for model, options in MODELS.items() for row in measure(model, options, populations, steps)]
    click.echo(f"{_machine()}; dense float32 matmul: {roofline / 1e9:.1f} GFLOP/s")
    click.echo(markdown_table(rows, roofline))
    if sweep_population:
        with tempfile.TemporaryDirectory() as workdir:
            alone, together = end_to_end(study_file, sweep_population, Path(workdir))
        same = "the same trials grokked" if alone.grokked == together.grokked else "OTHER trials grokked"
        click.echo(
            f"\n{study_file} end to end: one at a time {alone.seconds:.0f} s "
            f"({alone.trials_per_hour:,.0f} trials/h, {sum(alone.grokked)} grokked); population "
            f"{sweep_population}: {together.seconds:.0f} s "
            f"({together.trials_per_hour:,.0f} trials/h, {sum(together.grokked)} grokked), "
            f"{together.trials_per_hour / alone.trials_per_hour:.2f}x; {same}"
        )
