"""The ``grokforecast`` command as a user runs it: the installed console script."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from studies import study_text, write_study

GROKFORECAST = Path(sys.executable).with_name("grokforecast")
TINY = ["-o", "p=11", "-o", "embed_dim=8", "-o", "hidden=16", "--lr", "1e-2", "--eval-every", "10"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert GROKFORECAST.exists(), "the console script is not installed beside this interpreter"
    return subprocess.run([str(GROKFORECAST), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_prints_a_summary_and_writes_curves(tmp_path: Path) -> None:
    result = run("train", *TINY, "--steps", "50", "--curves", str(tmp_path / "c.json"))
    assert result.returncode == 0, result.stderr
    assert "t2 (memorized)" in result.stdout and "final val acc" in result.stdout
    record = json.loads((tmp_path / "c.json").read_text())
    assert len(record["curves"]["train_loss"]) == 50 and record["config"]["lr"] == 1e-2


def test_train_continues_from_its_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    assert run("train", *TINY, "--steps", "20", "--checkpoint", str(checkpoint)).returncode == 0
    result = run(
        "train", *TINY, "--steps", "40", "--checkpoint", str(checkpoint), "--curves", str(tmp_path / "c.json")
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "c.json").read_text())["curves"]["train_loss"]) == 40
    other = run("train", *TINY, "--weight-decay", "0.5", "--steps", "40", "--checkpoint", str(checkpoint))
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        "error: checkpoint belongs to another run: weight_decay=1.0 (this run: 0.5)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-fraction", "1.5"], "error: data_fraction=1.5 must lie strictly between 0 and 1"),
        (["-o", "q=3"], "error: workload 'modular_mlp' has no option 'q'"),
        (["-o", "p"], "error: workload option 'p' is not KEY=VALUE"),
        (["-o", "op=x%y"], "error: unknown operation op='x%y'"),
        (["-o", "op=x/y", "-o", "p=12"], "error: division needs a prime modulus but got p=12"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = run("train", *args, "--steps", "5")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_a_diverging_run_says_where_and_exits_1() -> None:
    result = run("train", *TINY, "--lr", "1e6", "--warmup-steps", "0", "--steps", "50")
    assert result.returncode == 1
    assert "diverged: the training loss became NaN or infinite at step" in result.stdout
    assert "Traceback" not in result.stderr


def test_corpus_command_builds_and_skips_finished_runs(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "g"\n[fixed]\nworkload_options = { p = 7, embed_dim = 4, hidden = 8 }\n'
        "steps = 10\n[grid]\nseed = [0, 1]\n"
    )
    first = run("corpus", str(grid), "--workers", "1", "--out", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr
    assert "0 runs already" in first.stdout and len(list((tmp_path / "out").iterdir())) == 2
    again = run("corpus", str(grid), "--workers", "1", "--out", str(tmp_path / "out"))
    assert "2 runs already" in again.stdout and "0 to go" in again.stdout
    missing = run("corpus", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "cannot read grid file" in missing.stderr


def test_bench_trainer_reports_three_loops_and_both_overheads_with_their_intervals() -> None:
    result = run("bench", "trainer", *TINY, "--timed-steps", "15", "--rounds", "3")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if "steps/s" in line]
    rates = {row[0]: float(row[row.index("steps/s") - 1]) for row in rows}
    assert set(rates) == {"plain", "evaluating", "trainer"} and min(rates.values()) > 0
    assert all(row[-2:] == ["page", "faults/step"] and float(row[-3]) >= 0 for row in rows)
    # 15 steps are rounded up to whole evaluation intervals of 10
    assert result.stdout.count("median of 3 rounds of 20 steps; 95 % interval") == 2


def test_bench_grok_time_scores_the_corpora_named() -> None:
    result = run("bench", "grok-time", "--corpus", "quadratic_add97", "--orders", "1")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "corpus" and rows[2:] == ["quadratic_add97"]  # the header, its rule, one corpus


def test_help_loads_neither_torch_nor_ray_nor_optuna() -> None:
    """``--help`` and shell completion answer at once: the heavy libraries load when a
    command runs, not when the command line is parsed."""
    code = """
import sys
from grokforecast.cli import main
for args in (["--help"], *([name, "--help"] for name in main.commands)):
    try:
        main(args, prog_name="grokforecast")
    except SystemExit:
        pass
print(sorted(m for m in ("torch", "ray", "optuna", "sqlalchemy", "plotly") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage: grokforecast [OPTIONS] COMMAND" in result.stdout and "sweep" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_bench_pruners_counts_the_grokkers_each_pruner_found_against_no_pruning(tmp_path: Path) -> None:
    # The random sampler draws the same three trials in both runs, from ranges narrow
    # enough around the median-pruner sweep test's trial (lr 3e-2, wd 1, r 0.8: groks by
    # step 300-450) that whatever Optuna's release draws groks within the 800 steps.
    text = (
        study_text("found", full_steps=800)
        .replace("low = 1e-3, high = 1e-2", "low = 2.5e-2, high = 3.5e-2")
        .replace("low = 0.1, high = 2.0", "low = 0.8, high = 1.2")
        .replace("low = 0.3, high = 0.8", "low = 0.7, high = 0.8")
    )
    pruners = ("HjorthPruner", "no pruning")
    variants = (*(f"--pruner={name}" for name in pruners), f"--keep={tmp_path / 'kept'}")
    result = run("bench", "pruners", str(write_study(tmp_path, text)), *variants)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    grokked = {  # the table's columns after the name: wall, finished, pruned, grokked, steps, best
        name: int(next(line for line in lines if line.startswith(name + " "))[len(name) :].split()[3])
        for name in pruners
    }
    found = [line for line in lines if ": found " in line]
    assert grokked["no pruning"] >= 1
    assert found == [
        f"{name}: found {grokked[name]} of the {grokked['no pruning']} grokkers" for name in pruners
    ]
    # --keep leaves each variant's study to look into, and never runs into an old one.
    for name, folder in zip(pruners, ("HjorthPruner", "no-pruning"), strict=True):
        database = tmp_path / "kept" / folder / "study.db"
        kept = optuna.load_study(study_name="found", storage=f"sqlite:///{database}")
        assert sum(bool(t.user_attrs.get("grokked")) for t in kept.trials) == grokked[name]
    again = run("bench", "pruners", str(tmp_path / "study.toml"), *variants)
    assert again.returncode != 0 and "no-pruning exists already; name a new folder" in again.stderr


def test_forecaster_predict_reads_logs_another_loop_wrote_and_names_a_bad_one(tmp_path: Path) -> None:
    """One run of the transformer corpus logged as Keras's CSVLogger would (a row per
    step, accuracy in per cent, empty cells between evaluations) and as HuggingFace's
    trainer_state.json: both forecast what the forecaster says of the run's own history."""
    import csv

    from grokforecast import GrokForecaster
    from grokforecast.corpus import load_corpus
    from grokforecast.history import History

    record = load_corpus("transformer_add31")[5]
    curves, probe = record.curves, 300
    evaluated = {int(step): index for index, step in enumerate(curves.eval_steps)}
    with (tmp_path / "run.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy"])
        for step in range(curves.steps):
            index = evaluated.get(step)
            validation = ["", ""] if index is None else [curves.val_loss[index], 100 * curves.val_acc[index]]
            writer.writerow([step, curves.train_loss[step], curves.train_acc[step], *validation])
    rows: list[dict] = []
    for step in range(curves.steps):
        rows.append({"loss": float(curves.train_loss[step]), "epoch": step / 10, "step": step})
        if step in evaluated:
            index = evaluated[step]
            rows.append(
                {"eval_loss": curves.val_loss[index], "eval_accuracy": curves.val_acc[index], "step": step}
            )
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": rows}))

    result = run(
        "forecaster", "predict", "run.csv", "trainer_state.json", "--until", str(probe), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    own = History.from_record(record, until=probe)
    without_weight_norm = {key: value for key, value in own.items() if not key.startswith("weight_norm")}
    for line, inputs in zip(
        result.stdout.splitlines(),
        ["train_loss+train_acc+val_loss+val_acc", "train_loss+val_loss+val_acc"],
        strict=True,
    ):
        expected = GrokForecaster.pretrained(inputs).predict_proba(without_weight_norm)
        assert f"P(grok) {expected:.2f} at step {probe} (read as {inputs};" in line
    config = record.config
    hyperparameters = ["--lr", str(config["lr"]), "--weight-decay", str(config["weight_decay"])]
    with_them = run(
        "forecaster",
        "predict",
        "run.csv",
        "--until",
        str(probe),
        *hyperparameters,
        "--data-fraction",
        str(config["data_fraction"]),
        cwd=tmp_path,
    )
    assert "read as train_loss+train_acc+val_loss+val_acc+hyperparameters;" in with_them.stdout
    fixed_data_set = run(
        "forecaster", "predict", "run.csv", "--until", str(probe), *hyperparameters, cwd=tmp_path
    )
    assert "read as train_loss+train_acc+val_loss+val_acc+hyperparameters;" in fixed_data_set.stdout
    assert "data_fraction, log_data_fraction read at the fitted corpus's mean" in fixed_data_set.stdout
    spelled = {
        "learning_rate": config["lr"],
        "wd": config["weight_decay"],
        "train_fraction": config["data_fraction"],
    }
    curves = {key: own[key].tolist() for key in ("val_loss", "val_loss_steps", "val_acc", "val_acc_steps")}
    (tmp_path / "curves.json").write_text(json.dumps({**curves, "hyperparameters": spelled}))
    logged_with_them = run("forecaster", "predict", "curves.json", cwd=tmp_path)
    assert "(read as val_loss+val_acc+hyperparameters;" in logged_with_them.stdout, logged_with_them.stderr

    from tensorboardX import SummaryWriter

    with SummaryWriter(tmp_path / "tensorboard_run") as writer:
        for step, value in zip(own["val_loss_steps"], own["val_loss"], strict=True):
            writer.add_scalar("Loss/validation", float(value), int(step))
        writer.add_hparams(spelled, {"hparam/accuracy": 0.0})
    tensorboard_run = run("forecaster", "predict", "tensorboard_run", cwd=tmp_path)
    assert "(read as val_loss+hyperparameters;" in tensorboard_run.stdout, tensorboard_run.stderr

    (tmp_path / "other.json").write_text(json.dumps({"perplexity": [9.0, 8.0]}))
    (tmp_path / "empty").mkdir()
    for args, message in [
        (["other.json"], "error: other.json: holds none of the curves"),
        (["missing.csv"], "error: missing.csv: No such file or directory"),
        (["missing_run"], "error: missing_run: No such file or directory"),
        (["empty"], "error: empty: a directory is read as a TensorBoard run, and it holds no event file"),
        (["run.csv", "--lr", "1e-3"], "error: give --lr and --weight-decay together"),
    ]:
        bad = run("forecaster", "predict", *args, cwd=tmp_path)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), bad.stderr
