"""The compose cluster, run for real: built, started, swept, killed, resumed, checked.

:func:`run_cluster` drives ``docker/compose.yaml`` from a checkout with the engine that
is present (docker where its daemon answers, else podman with podman-compose), under a
project name of its own, so that a user's cluster is never touched:

1. build the images (``make cluster-image``: offline, a Debian base and a wheelhouse);
2. start PostgreSQL, the dashboard and two worker containers on the study file, which the
   workers create and share (the Optuna backend; checkpoints on the shared volume);
3. once a worker's trial passes a drawn step, SIGKILL that worker's main process
   (``kill -9``, what the OOM killer does) and start the container again (it rejoins the
   study); once the other's trial passes another, stop it with SIGTERM (``docker stop``,
   a node drained) and start it again;
4. wait for both workers to end, and resume the study with a one-shot container, as a
   user would after a crash;
5. read the study back from inside the cluster (:func:`readout`) and run the same trials
   on the host, two workers of one thread each, for the decisions and the time;
6. stop the cluster and remove its containers and volumes, whatever happened.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokforecast.errors import GrokforecastError

if TYPE_CHECKING:
    from grokforecast.sweep.spec import BudgetSpec

#: The PostgreSQL image ``make cluster-image`` builds from Debian's package.
POSTGRES_IMAGE = "grokforecast-postgres:15"
WORKERS = 2
#: Longest wait for any one stage of the campaign (a start, a step, the study's end).
STAGE_TIMEOUT_SECONDS = 900.0
#: How often the watch inside the cluster reads the study.
POLL_SECONDS = 0.25
#: How long a one-shot look at the study retries a database it cannot reach.
READOUT_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ClusterRun:
    """What a cluster campaign measured (seconds) and found."""

    engine: str
    build_seconds: float
    start_seconds: float
    sweep_seconds: float
    host_seconds: float
    kills: list[str]
    #: The study read back from inside the cluster (:func:`readout`).
    study: dict[str, Any]
    #: Parameter sets whose decision on the cluster differs from the host's.
    decisions_differing: list[dict[str, Any]]

    @property
    def intact(self) -> bool:
        """Exactly the target finished, none RUNNING, nothing repeated, every curve whole,
        at most a checkpoint interval lost per kill, and the host's decisions."""
        report = self.study["report"]
        exact = (report["finished"], report["running"], report["repeated"], report["curve_faults"])
        bounded = report["steps_retrained"] <= report["interrupted"] * report["checkpoint_every"]
        return exact == (report["target"], 0, 0, 0) and bounded and not self.decisions_differing


def engine_in_use() -> str:
    """docker where its daemon answers, else podman; an error naming both otherwise."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman") and shutil.which("podman-compose"):
        return "podman"
    raise GrokforecastError(
        "no container engine: start a docker daemon, or install podman and podman-compose "
        "(the README's cluster section says how)"
    )


class Watch:
    """The newest :func:`readout` of a process that reads the study again and again inside
    the cluster. One process imports grokforecast once, so a look costs a query, not an
    interpreter's start (seconds, against trials that pass their probe in about one)."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.latest: dict[str, Any] = {"exists": False}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            self.latest = json.loads(line)

    def wait_until(self, condition: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first readout for which ``ready`` holds; ``condition`` names it in the error."""
        deadline = time.monotonic() + STAGE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            seen = self.latest
            if seen.get("exists") and ready(seen):
                return seen
            if not self.reader.is_alive():
                error = (self.process.stderr.read() if self.process.stderr else "").strip().splitlines()
                raise GrokforecastError(f"the cluster's study watch ended: {error[-1] if error else '?'}")
            time.sleep(POLL_SECONDS / 10)
        raise GrokforecastError(f"the cluster never reached: {condition}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class Cluster:
    """One compose project of ``docker/compose.yaml`` under ``root``, on ``study``."""

    def __init__(self, root: Path, engine: str, study: str, env: dict[str, str]) -> None:
        self.root, self.engine, self.study = root, engine, study
        self.project = f"grokforecast-test-{os.getpid()}"
        self.env = {**os.environ, **env, "STUDY": study}

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = ["podman-compose"] if self.engine == "podman" else ["docker", "compose"]
        command += ["-p", self.project, "-f", str(self.root / "docker" / "compose.yaml"), *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=self.root)
        if check and done.returncode:
            raise GrokforecastError(f"compose {args[0]} failed: {_last_line(done)}")
        return done

    def engine_command(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([self.engine, *args], capture_output=True, text=True)
        if done.returncode:
            raise GrokforecastError(f"{self.engine} {args[0]} failed: {_last_line(done)}")
        return done

    def containers(self, service: str) -> list[str]:
        """Names of the service's containers, running or not, in name order."""
        labels = [
            f"label=com.docker.compose.project={self.project}",
            f"label=com.docker.compose.service={service}",
        ]
        listed = self.engine_command(
            "ps", "-a", "--format", "{{.Names}}", "--filter", labels[0], "--filter", labels[1]
        )
        return sorted(listed.stdout.split())

    def hostname(self, container: str) -> str:
        return self.engine_command("inspect", "--format", "{{.Config.Hostname}}", container).stdout.strip()

    def readout(self) -> dict[str, Any]:
        """The study as a container of the cluster reads it from the cluster's database.

        A look that cannot reach the database is tried again for up to
        ``READOUT_RETRY_SECONDS``; it reaches the database by its address, not its name
        (:meth:`storage_by_address`)."""
        deadline = time.monotonic() + READOUT_RETRY_SECONDS
        while True:
            done = subprocess.run(self._exec_readout(loop=False), capture_output=True, text=True)
            seen = (
                json.loads(done.stdout.splitlines()[-1])
                if done.returncode == 0
                else {"exists": False, "error": _last_line(done)}
            )
            if "error" not in seen or time.monotonic() > deadline:
                return seen
            time.sleep(1.0)

    def _exec_readout(self, loop: bool) -> list[str]:
        """The command that prints :func:`readout` as a JSON line inside the dashboard's
        container: once, or every ``POLL_SECONDS`` until stopped."""
        code = (
            f"from grokforecast.bench.cluster import print_readouts; print_readouts({self.study!r}, {loop})"
        )
        storage = f"GROKFORECAST_STORAGE={self.storage_by_address()}"
        return [self.engine, "exec", "-e", storage, self.containers("dashboard")[0], "python", "-c", code]

    def storage_by_address(self) -> str:
        """The cluster database's URL with the postgres container's address for its name:
        after the resume's ``run --rm`` container left the network, podman 4.3's name
        server failed to resolve ``postgres`` for more than 30 s (2 of 14 runs), while the
        sweep itself had finished."""
        address = self.engine_command(
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            self.containers("postgres")[0],
        ).stdout.strip()
        return f"postgresql+psycopg://grok:{self.env['POSTGRES_PASSWORD']}@{address}:5432/grokforecast"

    def watch(self) -> Watch:
        """A :class:`Watch` of the study, to be closed by the caller."""
        return Watch(self._exec_readout(loop=True))

    def down(self) -> None:
        """Stop and remove the containers, the volumes and the network (named as both
        engines name them: podman-compose's ``down -v`` leaves the last two)."""
        self.compose("down", "-v", check=False)
        for kind, name in (("volume", "studies-db"), ("volume", "runs"), ("network", "default")):
            for _ in range(5):  # a network may be in use a moment after its containers are gone
                subprocess.run([self.engine, kind, "rm", "-f", f"{self.project}_{name}"], capture_output=True)
                if subprocess.run(
                    [self.engine, kind, "inspect", f"{self.project}_{name}"], capture_output=True
                ).returncode:
                    break
                time.sleep(1.0)


def run_cluster(
    root: Path, study: str = "studies/cluster.toml", seed: int = 0, kills: bool = True
) -> ClusterRun:
    """The campaign of the module's docstring, from the checkout at ``root`` (without step 3
    unless ``kills``: the time of an undisturbed sweep)."""
    from grokforecast.sweep.plan import SweepPlan

    if not (root / "docker" / "compose.yaml").is_file():
        raise GrokforecastError(f"{root} holds no docker/compose.yaml: run from a grokforecast checkout")
    engine = engine_in_use()
    started = time.monotonic()
    built = subprocess.run(
        ["make", "-C", str(root), "cluster-image", f"ENGINE={engine}"], capture_output=True, text=True
    )
    if built.returncode:
        raise GrokforecastError(f"make cluster-image failed: {_last_line(built)}")
    build_seconds = time.monotonic() - started
    port = _free_port()
    secrets_and_sizes = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "POSTGRES_IMAGE": POSTGRES_IMAGE,
        "WORKERS": str(WORKERS),
        "WORKER_THREADS": "1",
        "DASHBOARD_PORT": str(port),
    }
    cluster = Cluster(root, engine, study, secrets_and_sizes)
    try:
        started = time.monotonic()
        cluster.compose("up", "-d", "postgres", "dashboard", "worker")
        _wait_for_dashboard(port)
        start_seconds = time.monotonic() - started
        budget = SweepPlan.load(root / study).spec.budget
        made = _kill_and_restart(cluster, random.Random(seed), budget) if kills else []
        for name in cluster.containers("worker"):
            cluster.engine_command("wait", name)
        cluster.compose("run", "--rm", "worker", "grokforecast", "resume", study)
        sweep_seconds = time.monotonic() - started - start_seconds
        seen = cluster.readout()
        if not seen.get("exists") or seen["report"] is None:
            raise GrokforecastError(f"the study did not reach its target: {seen}")
    finally:
        cluster.down()
    host_seconds, host_decisions = _run_on_host(root / study, seen["trials"])
    differing = [
        {"params": t["params"], "cluster": t["decision"], "host": host_decisions.get(_key(t["params"]))}
        for t in seen["trials"]
        if t["decision"] != host_decisions.get(_key(t["params"]))
    ]
    return ClusterRun(
        engine, build_seconds, start_seconds, sweep_seconds, host_seconds, made, seen, differing
    )


def _kill_and_restart(cluster: Cluster, rng: random.Random, budget: BudgetSpec) -> list[str]:
    """SIGKILL the worker whose trial first passes a drawn step and start it again, then
    SIGTERM the other once its own trial has passed another and start it again; returns
    what was done.

    Each step is drawn between the first checkpoint and half the probe, which every trial
    passes with time to spare for a look: a step only kept trials reach could be missed,
    if the other worker drew nothing but trials pruned at the probe before the study ended."""
    hosts = {cluster.hostname(name): name for name in cluster.containers("worker")}
    done = []
    watch = cluster.watch()
    try:
        for signal_name in ("KILL", "TERM"):
            step = rng.randrange(budget.checkpoint_every, budget.probe_steps // 2)

            def past(seen: dict[str, Any], step: int = step) -> list[str]:
                if seen["report"] is not None:
                    raise GrokforecastError(f"the study ended before a worker's trial passed step {step}")
                return [r["host"] for r in seen["running"] if r["step"] >= step and r["host"] in hosts]

            seen = watch.wait_until(f"a worker's trial past step {step}", lambda s, past=past: bool(past(s)))
            victim = hosts.pop(past(seen)[0])
            if signal_name == "KILL":
                cluster.engine_command("kill", "--signal", "KILL", victim)  # kill -9 of its main process
            else:
                cluster.engine_command("stop", victim)  # SIGTERM, SIGKILL after the engine's grace time
            cluster.engine_command("start", victim)
            done.append(f"SIG{signal_name} {victim} (its trial past step {step}), restarted")
    finally:
        watch.close()
    return done


def print_readouts(study_file: str, loop: bool) -> None:
    """Print :func:`readout` as one JSON line, once or every ``POLL_SECONDS`` (what
    :class:`Watch` runs inside the cluster); a failed look prints why instead."""
    while True:
        try:
            seen = readout(study_file)
        except Exception as error:  # the database starting, or between two writes
            seen = {"exists": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(seen), flush=True)
        if not loop:
            return
        time.sleep(POLL_SECONDS)


def readout(study_file: str) -> dict[str, Any]:
    """The study of ``study_file`` in ``GROKFORECAST_STORAGE`` (run inside the cluster):
    the newest step each RUNNING trial reported and on which host, each finished trial's
    parameters and decision, and, once the target is reached, the fault report."""
    import optuna
    from optuna.trial import TrialState

    from grokforecast.backends.optuna.objective import worker_of
    from grokforecast.bench.faults import read_back
    from grokforecast.sweep.plan import SweepPlan
    from grokforecast.sweep.study import FINISHED
    from grokforecast.vocabulary import RESUMED_FROM_ATTR

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = SweepPlan.load(Path(study_file), os.environ.get("GROKFORECAST_STORAGE"))
    try:
        study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    except KeyError:
        return {"exists": False, "error": "no study yet"}
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    running = [t for t in trials if t.state is TrialState.RUNNING]
    retry = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    resumed = {
        t.system_attrs["failed_trial"]: t.user_attrs.get(RESUMED_FROM_ATTR)
        for t in trials
        if "failed_trial" in t.system_attrs
    }
    return {
        "exists": True,
        "running": [
            {
                "host": (worker_of(t) or ("", 0))[0],
                "step": max(t.intermediate_values, default=0),
            }
            for t in running
        ],
        "trials": [{"params": t.params, "decision": _decision_of(t)} for t in finished],
        "interruptions": [
            {"trial": t.number, "retried_as": retry.get(t.number), "resumed_from": resumed.get(t.number)}
            for t in trials
            if t.state is TrialState.FAIL
        ],
        "report": asdict(read_back(plan)) if len(finished) >= plan.spec.n_trials else None,
    }


def _decision_of(trial: Any) -> str:
    """The stopper's decision at the probe (the state where no stopper decided)."""
    from grokforecast.vocabulary import DECISION_ATTR

    record = trial.user_attrs.get(DECISION_ATTR)
    return record.get("decision", "?") if isinstance(record, dict) else trial.state.name.lower()


def _run_on_host(study_file: Path, trials: list[dict[str, Any]]) -> tuple[float, dict[tuple, str]]:
    """The cluster's trials, enqueued in a fresh SQLite study on this machine and run by
    two workers of one thread each (as in the containers): seconds taken, decisions."""
    import optuna

    from grokforecast.sweep.plan import SweepPlan
    from grokforecast.sweep.study import create_study

    with tempfile.TemporaryDirectory(prefix="grokforecast-cluster-host-") as folder:
        url = f"sqlite:///{Path(folder) / 'host.db'}"
        plan = SweepPlan.load(study_file, url)
        study = create_study(plan)
        for trial in trials:
            study.enqueue_trial(trial["params"])
        command = [sys.executable, "-c", "import sys; from grokforecast.cli import main; sys.exit(main())"]
        command += ["resume", str(study_file.resolve()), "--storage", url, "--workers", str(WORKERS)]
        started = time.monotonic()
        ran = subprocess.run(
            command, capture_output=True, text=True, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        seconds = time.monotonic() - started
        if ran.returncode:
            raise GrokforecastError(f"the host's run of the cluster's trials failed: {_last_line(ran)}")
        finished = optuna.load_study(study_name=plan.spec.name, storage=url).get_trials(deepcopy=False)
        return seconds, {_key(t.params): _decision_of(t) for t in finished if t.params}


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((name, round(float(value), 12)) for name, value in params.items()))


def _wait_for_dashboard(port: int) -> None:
    deadline = time.monotonic() + STAGE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return
        except OSError:
            time.sleep(1.0)
    raise GrokforecastError(f"the cluster's dashboard never answered on 127.0.0.1:{port}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
