import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import grokforecast as gf
from grokforecast.corpus import load_corpus
from grokforecast.errors import GrokforecastError
from grokforecast.forecast import PRETRAINED_INPUTS, GrokForecaster, fit_grok_time
from grokforecast.forecast.features import FEATURE_GROUPS, HYPERPARAMETER_FEATURE_INPUTS, extract_features
from grokforecast.forecast.fitting import (
    DEFAULT_PROBE_FRACTIONS,
    MIN_SLOPE,
    WEIGHTINGS,
    choose_fit,
    fit_at_probes,
    fit_on_records,
    probe_history,
    rescale_for_new_families,
    usable_records,
)
from grokforecast.forecast.forecaster import CLIP
from grokforecast.forecast.transfer import agreed_signs, consistent_weights, family_directions
from grokforecast.vocabulary import CURVE_GROUPS


@pytest.fixture(scope="module")
def quadratic() -> list:
    return load_corpus("quadratic_add97")


def test_a_fitted_forecaster_separates_held_out_runs(quadratic: list) -> None:
    train, test = quadratic[::2], quadratic[1::2]
    forecaster = fit_on_records(GrokForecaster(), train, fractions=(0.1,))
    p = np.array([forecaster.predict_proba(probe_history(r, 0.1)) for r in test])
    grokked = np.array([r.grokked for r in test])
    assert ((p >= 0) & (p <= 1)).all()
    pairs_ranked_right = (p[grokked][:, None] > p[~grokked][None, :]).mean()  # the ROC AUC
    assert pairs_ranked_right > 0.9


def test_the_shipped_scale_is_calibrated_for_families_the_fit_did_not_see() -> None:
    names = ("quadratic_add97", "digits_omnigrok", "parity_30_3")
    records = usable_records([r for name in names for r in load_corpus(name)])
    histories = [probe_history(r, 0.1) for r in records]
    labels = [r.grokked for r in records]
    families, corpora = [r.family for r in records], [r.corpus for r in records]
    # The rescaling moves the scale, never the ranking.
    for groups in (CURVE_GROUPS, tuple(FEATURE_GROUPS)):
        rescaled = fit_on_records(GrokForecaster(groups), records, fractions=(0.1,))
        raw = GrokForecaster(groups).fit(histories, labels, families, corpora)
        logits = np.array([raw.predict_logit(h) for h in histories])
        new = np.array([rescaled.predict_logit(h) for h in histories])
        slope = np.polyfit(logits, new, 1)[0]
        assert slope >= MIN_SLOPE and np.corrcoef(logits, new)[0, 1] == pytest.approx(1.0)
    # With every series and the hyperparameters, each family scored by the fit without it
    # (weighted as the whole fit chose) is calibrated on average: as many groks forecast
    # as occur.
    intercept = float(np.mean(new - slope * logits))
    matrix = rescaled.feature_matrix(histories)
    outcomes, family_of, corpus_of = np.array(labels, dtype=int), np.array(families), np.array(corpora)
    forecast = 0.0
    for family in set(families):
        rest = family_of != family
        without = fit_at_probes(
            GrokForecaster(groups),
            {0.1: matrix[rest]},
            outcomes[rest],
            family_of[rest],
            corpus_of[rest],
            rescaled.weighting,
            rescaled.weighted_groups,
        )
        held_out = without.predict_logit_features(matrix[~rest])
        forecast += (1 / (1 + np.exp(-(slope * held_out + intercept)))).sum()
    assert forecast == pytest.approx(sum(labels), abs=0.05)


def test_a_feature_whose_direction_flips_between_families_gets_no_weight() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([False, True], 60)
    families = np.repeat(["a", "b", "c"], 40)
    steady = 1 / (1 + np.exp(-(labels + rng.normal(size=120))))  # larger in grokking runs everywhere
    flips = np.where(families == "b", -1.0, 1.0) * labels + rng.normal(size=120)
    histories = [
        {"val_acc": np.array([0.0, 0.1, 0.2, s]), "val_loss": np.array([1.0, 1.0, 1.0, np.exp(f)])}
        for s, f in zip(steady, flips, strict=True)
    ]
    groups = ("val_acc", "val_loss")
    held_to_agreement = GrokForecaster(groups, ("val_acc_last", "val_loss_last"), 1.0)
    weights = held_to_agreement.fit(histories, labels, families).to_dict()["weights"]
    assert weights[0] > 0 and weights[1] == 0.0
    free = GrokForecaster(groups, ("val_acc_last", "val_loss_last"), 1.0).fit(histories, labels)
    assert free.to_dict()["weights"][1] != 0.0  # one family's view: nothing to disagree with


def test_a_family_that_never_varied_a_feature_does_not_vote_on_its_direction() -> None:
    # The learning rate grows with grokking in families a and b; c kept it fixed. c's
    # AUC of one half is not a disagreement: the weight keeps the sign a and b agree on,
    # sized by the weaker of their two directions. With only a varying it, nothing agrees.
    rng = np.random.default_rng(3)
    labels = np.tile([0, 1], 60)
    families = np.repeat(["a", "b", "c"], 40)
    lr = np.where(families == "c", 1e-3, labels + rng.normal(size=120))
    directions = family_directions(lr[:, None], labels, families, families)
    assert np.isnan(directions[2, 0]) and (directions[:2, 0] > 0).all()
    assert agreed_signs(directions).tolist() == [1]
    assert consistent_weights(directions)[0] == pytest.approx(directions[:2, 0].min())
    only_a = np.where(families == "a", lr, 1e-3)
    assert agreed_signs(family_directions(only_a[:, None], labels, families, families)).tolist() == [0]


def test_a_scale_ranking_new_families_below_chance_shrinks_to_the_floor() -> None:
    # The feature grows with grokking in families a and b and shrinks in c: a fit without
    # c ranks c upside down, a fit without a or b gives it no weight.
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1], 60)
    families = np.repeat(["a", "b", "c"], 40)
    matrix = (np.where(families == "c", -2.0, 2.0) * labels + rng.normal(size=120))[:, None]
    forecaster = GrokForecaster(("val_acc",), ("val_acc_last",))
    forecaster.fit_features(matrix, labels, weights=np.array([1.0]))
    before = forecaster.predict_logit_features(matrix)
    rescale_for_new_families(forecaster, {0.1: matrix}, labels, families, families, "consistent")
    after = forecaster.predict_logit_features(matrix)
    assert np.polyfit(before, after, 1)[0] == pytest.approx(MIN_SLOPE)


def test_consistent_weights_are_fitted_only_in_their_intercept() -> None:
    rng = np.random.default_rng(2)
    labels = np.tile([0, 1], 90)
    families = np.repeat(["a", "b", "c"], 60)
    strength = np.select([families == "a", families == "b"], [1.0, 2.0], 3.0)
    matrix = np.column_stack([strength * labels + rng.normal(size=180), rng.normal(size=180)])
    directions = family_directions(matrix, labels, families, families)
    forecaster = GrokForecaster(("val_acc",), ("val_acc_last", "val_acc_best"))
    fit_at_probes(forecaster, {0.1: matrix}, labels, families, families, weighting="consistent")
    weights = np.array(forecaster.to_dict()["weights"])
    assert forecaster.weighting == "consistent"
    np.testing.assert_allclose(weights, consistent_weights(directions))
    assert weights[0] == pytest.approx(np.abs(directions[:, 0]).min())  # family a's strength
    # The intercept is the maximum-likelihood one: as many groks forecast as occur.
    assert forecaster.predict_proba_features(matrix).sum() == pytest.approx(labels.sum(), rel=1e-6)
    with pytest.raises(ValueError, match="weighting='equal' must be one of"):
        fit_at_probes(forecaster, {0.1: matrix}, labels, families, families, weighting="equal")


Probed = dict[float, np.ndarray]


def _held_out_aucs(
    matrices: Probed, labels: np.ndarray, families: np.ndarray, corpora: np.ndarray, weighting: str, groups
) -> list[float]:
    """Each corpus's ROC AUC at the longest probe from a fit on the other families,
    weighted as told."""
    aucs = []
    for family in sorted(set(families.tolist())):
        rest = families != family
        forecaster = GrokForecaster(CURVE_GROUPS)
        fitted_on = {f: m[rest] for f, m in matrices.items()}
        fit_at_probes(forecaster, fitted_on, labels[rest], families[rest], corpora[rest], weighting, groups)
        logits = forecaster.predict_logit_features(matrices[max(matrices)][~rest])
        for corpus in sorted(set(corpora[~rest].tolist())):
            rows = corpora[~rest] == corpus
            aucs.append(roc_auc_score(labels[~rest][rows], logits[rows]))
    return aucs


@pytest.fixture(scope="module")
def every_corpus_probed() -> tuple[Probed, np.ndarray, np.ndarray, np.ndarray]:
    """Every shipped run's curve features at the probes the shipped calibrations are fitted at."""
    records = usable_records(load_corpus())
    matrices = {
        f: GrokForecaster(CURVE_GROUPS).feature_matrix([probe_history(r, f) for r in records])
        for f in DEFAULT_PROBE_FRACTIONS
    }
    labels = np.array([r.grokked for r in records], dtype=int)
    return matrices, labels, np.array([r.family for r in records]), np.array([r.corpus for r in records])


def _rows(matrices: Probed, rows: np.ndarray) -> Probed:
    return {f: m[rows] for f, m in matrices.items()}


def test_the_weighting_chosen_is_the_one_that_ranks_a_held_out_family_best(every_corpus_probed) -> None:
    matrices, labels, families, corpora = every_corpus_probed
    mean_auc = {
        w: np.mean(_held_out_aucs(matrices, labels, families, corpora, w, CURVE_GROUPS)) for w in WEIGHTINGS
    }
    forecaster = GrokForecaster(CURVE_GROUPS)
    groups, chosen = choose_fit(forecaster, matrices, labels, families, corpora, weighted_groups=CURVE_GROUPS)
    assert groups == CURVE_GROUPS and mean_auc[chosen] == max(mean_auc.values())
    two = np.isin(families, ["digits_mlp", "sparse_parity"])
    assert choose_fit(forecaster, _rows(matrices, two), labels[two], families[two], corpora[two]) == (
        CURVE_GROUPS,
        "logistic",
    )


def test_fewer_groups_are_weighed_only_where_they_rank_held_out_families_clearly_better(
    every_corpus_probed,
) -> None:
    """Without the digits MLP, the curves' groups are chosen among every subset: the one
    chosen beats every group by more than a standard error, family by family held out,
    and it ranks the digits runs, which it never saw, better than every group does."""
    matrices, labels, families, corpora = every_corpus_probed
    known = families != "digits_mlp"
    seen = _rows(matrices, known)
    args = (labels[known], families[known], corpora[known])
    groups, weighting = choose_fit(GrokForecaster(CURVE_GROUPS), seen, *args)
    assert set(groups) < set(CURVE_GROUPS)
    chosen = np.array(_held_out_aucs(seen, *args, weighting, groups))
    widest = max((np.array(_held_out_aucs(seen, *args, w, CURVE_GROUPS)) for w in WEIGHTINGS), key=np.mean)
    gains = chosen - widest
    assert gains.mean() > gains.std(ddof=1) / np.sqrt(len(gains))

    def digits_auc(weights_by: str, weighted: tuple[str, ...]) -> float:
        forecaster = fit_at_probes(GrokForecaster(CURVE_GROUPS), seen, *args, weights_by, weighted)
        logits = forecaster.predict_logit_features(matrices[0.1][~known])
        digits = [corpora[~known] == c for c in sorted(set(corpora[~known].tolist()))]
        return np.mean([roc_auc_score(labels[~known][rows], logits[rows]) for rows in digits])

    assert digits_auc(weighting, groups) > max(digits_auc(w, CURVE_GROUPS) for w in WEIGHTINGS)
    forecaster = fit_at_probes(GrokForecaster(CURVE_GROUPS), seen, *args)
    weighed = {f for f, w in zip(forecaster.features, forecaster.to_dict()["weights"], strict=True) if w}
    assert weighed <= {f for g in groups for f in FEATURE_GROUPS[g]} and forecaster.weighted_groups == groups
    with pytest.raises(ValueError, match=r"weighted_groups=\['hyperparameters'\] must be a non-empty subset"):
        fit_at_probes(forecaster, seen, *args, weighted_groups=("hyperparameters",))


def test_save_and_load_give_the_same_forecasts(quadratic: list, tmp_path: Path) -> None:
    forecaster = fit_on_records(GrokForecaster(("train_loss", "val_acc")), quadratic)
    forecaster.save(tmp_path / "f.json")
    again = GrokForecaster.load(tmp_path / "f.json")
    history = probe_history(quadratic[3], 0.05)
    assert again.predict_proba(history) == forecaster.predict_proba(history)
    assert again.features == forecaster.features
    shipped = GrokForecaster.pretrained("full+hyperparameters")
    shipped.save(tmp_path / "shipped.json")
    assert GrokForecaster.load(tmp_path / "shipped.json").weighted_groups == shipped.weighted_groups


@pytest.mark.parametrize("inputs", sorted(PRETRAINED_INPUTS))
def test_every_shipped_calibration_loads_and_forecasts(inputs: str, quadratic: list) -> None:
    forecaster = GrokForecaster.pretrained(inputs)
    history = probe_history(quadratic[0], 0.1)
    logit = forecaster.predict_logit(history)
    assert forecaster.predict_proba(history) == pytest.approx(1 / (1 + np.exp(-logit)))
    assert forecaster.groups == PRETRAINED_INPUTS[inputs]


def test_a_calibration_of_any_set_of_curves_is_named_and_fitted_on_demand(quadratic: list) -> None:
    from grokforecast.forecast.forecaster import groups_of, inputs_key

    assert inputs_key(("val_acc", "hyperparameters", "train_loss")) == "train_loss+val_acc+hyperparameters"
    assert inputs_key((*CURVE_GROUPS, "hyperparameters")) == "full+hyperparameters"
    for name in (*PRETRAINED_INPUTS, "train_acc+weight_norm"):
        assert inputs_key(groups_of(name)) == name
    for bad in ("val_acc+train_loss", "hyperparameters", "train_loss+spectrum", "full+val_acc"):
        with pytest.raises(ValueError, match="must be 'full' or some of"):
            GrokForecaster.pretrained(bad)
    one, other = (GrokForecaster.pretrained("train_loss+val_acc") for _ in range(2))
    assert one.groups == ("train_loss", "val_acc") and one is not other
    one.rescale(2.0, 0.0)  # a caller's copy: the next one asked for is unchanged
    history = probe_history(quadratic[0], 0.1)
    assert GrokForecaster.pretrained("train_loss+val_acc").predict_logit(history) == other.predict_logit(
        history
    )


def test_a_shipped_calibration_reads_whatever_a_training_loop_logged(quadratic: list) -> None:
    """``pretrained()`` reads every curve, but a history of fewer (no weight norm, no
    training accuracy: what most loops log) is forecast by the shipped calibration of
    those it has, whatever their spelling, and a log with a row per step, NaN where it
    did not evaluate, reads as the evaluations alone."""
    history = probe_history(quadratic[5], 0.1)
    logged = {
        key: history[key] for key in ("train_loss", "val_loss", "val_loss_steps", "val_acc", "val_acc_steps")
    }
    expected = GrokForecaster.pretrained("train_loss+val_loss+val_acc").predict_logit(logged)
    every_curve = GrokForecaster.pretrained()
    assert every_curve.predict_logit(logged) == pytest.approx(expected)
    assert every_curve.reader_of(history)[0] is every_curve
    assert every_curve.reader_of(logged)[0].groups == ("train_loss", "val_loss", "val_acc")
    steps = len(history["train_loss"])
    dense_val_acc, dense_val_loss = np.full(steps, np.nan), np.full(steps, np.nan)
    dense_val_acc[history["val_acc_steps"]] = history["val_acc"]
    dense_val_loss[history["val_loss_steps"]] = history["val_loss"]
    dense = {"loss": history["train_loss"], "val_accuracy": 100 * dense_val_acc, "test_loss": dense_val_loss}
    assert every_curve.predict_logit(dense) == pytest.approx(expected)
    assert (
        list(every_curve.assess(dense).features)
        == GrokForecaster(("train_loss", "val_loss", "val_acc")).features
    )
    # A training loss too short for its signature is left out, the validation loss read.
    short = {"train_loss": history["train_loss"][:3], "val_loss": history["val_loss"]}
    assert every_curve.predict_logit(short) == pytest.approx(
        GrokForecaster.pretrained("val_loss").predict_logit(short)
    )
    # A calibration with the hyperparameters, given a history without them, reads its curves.
    with_them = GrokForecaster.pretrained("full+hyperparameters")
    without = {key: value for key, value in history.items() if key != "hyperparameters"}
    assert with_them.predict_logit(without) == pytest.approx(every_curve.predict_logit(history))
    with pytest.raises(ValueError, match="train_loss has 3 points; at least 6 are needed"):
        every_curve.predict_logit({"train_loss": [2.0, 1.0, 0.5]})


def test_a_log_file_of_another_scripts_shape_forecasts_as_its_curves(quadratic: list, tmp_path) -> None:
    """Logs as other grokking scripts save them read as the run's own curves: saved lists
    (``train_losses``, ``test_accs``), curves nested by split with their own step columns,
    rows under ``history`` with the hyperparameters in a nested ``config``, and a step
    column of fractional epochs, whose points keep their order instead of collapsing onto
    whole epochs (the forecast reads steps relative to the window, so their unit is free)."""
    import json

    from grokforecast.forecast.log_files import read_log

    record = quadratic[5]
    history = probe_history(record, 0.1)
    train_loss, train_acc = history["train_loss"].tolist(), history["train_acc"].tolist()
    val_loss, val_acc = history["val_loss"].tolist(), history["val_acc"].tolist()
    eval_steps = history["val_loss_steps"].tolist()
    own = {key: value for key, value in history.items() if not key.startswith("weight_norm")}
    forecast_of = GrokForecaster.pretrained_for
    expected = forecast_of(own).predict_logit(own)

    def logit_of(name: str, content: object) -> float:
        (tmp_path / name).write_text(json.dumps(content))
        logged = read_log(tmp_path / name)
        return forecast_of(logged).predict_logit(logged)

    config = {"optimizer": {"lr": record.config["lr"], "weight_decay": record.config["weight_decay"]}}
    config["data"] = {"frac_train": record.config["data_fraction"]}
    nested = {
        "config": config,
        "train": {"loss": train_loss, "acc": train_acc},
        "val": {"loss": val_loss, "acc": val_acc, "step": eval_steps},
    }
    assert logit_of("nested.json", nested) == pytest.approx(expected)

    def rows(clock: str, per_step: float) -> list[dict]:
        """The run as a row per step and one per evaluation, timed by ``clock``."""
        training = zip(range(len(train_loss)), train_loss, train_acc, strict=True)
        evaluations = zip(eval_steps, val_loss, val_acc, strict=True)
        return [{clock: s * per_step, "loss": loss, "accuracy": acc} for s, loss, acc in training] + [
            {clock: s * per_step, "eval_loss": loss, "eval_accuracy": acc} for s, loss, acc in evaluations
        ]

    assert logit_of("history.json", {"config": config, "history": rows("step", 1)}) == pytest.approx(expected)
    # An epoch of 8 steps: the log's only clock counts in eighths.
    assert logit_of("epochs.json", {"config": config, "history": rows("epoch", 1 / 8)}) == pytest.approx(
        expected
    )
    epochs = read_log(tmp_path / "epochs.json")
    assert epochs["val_loss_steps"].tolist() == [step / 8 for step in eval_steps]
    assert epochs.newest_step == history.newest_step / 8
    assert epochs.until(1.5)["val_loss_steps"].max() <= 1.5

    saved_lists = {"train_losses": train_loss, "test_losses": val_loss, "test_accs": val_acc}
    saved_lists |= {"test_losses_steps": eval_steps, "test_accs_steps": eval_steps}
    curves_only = {
        key: own[key] for key in ("train_loss", "val_loss", "val_loss_steps", "val_acc", "val_acc_steps")
    }
    assert logit_of("lists.json", saved_lists) == pytest.approx(
        forecast_of(curves_only).predict_logit(curves_only)
    )


def test_a_tensorboard_run_forecasts_as_its_curves_with_its_hparams(quadratic: list, tmp_path) -> None:
    """A run logged to TensorBoard, read from its directory: a PyTorch script's tags
    (``Loss/train``, ``Accuracy/test``) with the hyperparameters of its ``add_hparams``
    record, or Keras's ``train/`` and ``validation/`` event files of the same tags, their
    scalars TF2's one-element tensors. Both forecast what the run's own curves do (to the
    float32 the files keep); a record cut short at a file's end (a run still writing) ends
    that file; a directory without event files is named as such."""
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.proto.tensor_pb2 import TensorProto

    from grokforecast.forecast.log_files import read_log

    record = quadratic[5]
    history = probe_history(record, 0.1)
    names = {"train_loss": "Loss/train", "train_acc": "Accuracy/train"}
    names |= {"val_loss": "Loss/test", "val_acc": "Accuracy/test"}
    as_float32 = {
        key: np.asarray(history[key], dtype=np.float32).astype(float) if key in names else history[key]
        for key in history
        if not key.startswith("weight_norm")
    }
    forecast_of = GrokForecaster.pretrained_for
    expected = forecast_of(as_float32).predict_logit(as_float32)

    pytorch_run = tmp_path / "runs" / "pytorch"
    with SummaryWriter(pytorch_run) as writer:
        for curve, tag in names.items():
            for step, value in zip(history[f"{curve}_steps"], history[curve], strict=True):
                writer.add_scalar(tag, float(value), int(step))
        config = record.config
        hparams = {
            "learning_rate": config["lr"],
            "wd": config["weight_decay"],
            "frac_train": config["data_fraction"],
        }
        writer.add_hparams(hparams, {"hparam/final_accuracy": 0.0})
    logged = read_log(pytorch_run)
    assert logged.hyperparameters == pytest.approx(
        {"lr": config["lr"], "weight_decay": config["weight_decay"], "data_fraction": config["data_fraction"]}
    )
    assert forecast_of(logged).groups == forecast_of(as_float32).groups
    assert forecast_of(logged).predict_logit(logged) == pytest.approx(expected)

    keras_run = tmp_path / "runs" / "keras"
    for split, curves in (("train", ("train_loss", "train_acc")), ("validation", ("val_loss", "val_acc"))):
        with SummaryWriter(keras_run / split) as writer:
            for curve, tag in zip(curves, ("epoch_loss", "epoch_accuracy"), strict=True):
                for step, value in zip(history[f"{curve}_steps"], history[curve], strict=True):
                    scalar = TensorProto(dtype=1, float_val=[float(value)])
                    summary = Summary(value=[Summary.Value(tag=tag, tensor=scalar)])
                    writer._get_file_writer().add_summary(summary, int(step))
    curves_only = {key: value for key, value in as_float32.items() if key != "hyperparameters"}
    logged = read_log(keras_run)
    assert logged.hyperparameters is None
    assert forecast_of(logged).predict_logit(logged) == pytest.approx(
        forecast_of(curves_only).predict_logit(curves_only)
    )

    (event_file,) = (keras_run / "validation").glob("events.out.tfevents.*")
    whole = read_log(keras_run)["val_acc"]  # written last
    event_file.write_bytes(event_file.read_bytes()[:-7])
    assert read_log(keras_run)["val_acc"].tolist() == whole[:-1].tolist()
    with pytest.raises(GrokforecastError, match="a directory of several runs\\? give one run's directory"):
        read_log(tmp_path / "runs")  # the parent of both runs: their tags under run/ prefixes
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        GrokforecastError, match="empty: a directory is read as a TensorBoard run, and it holds no"
    ):
        read_log(tmp_path / "empty")


def test_a_damaged_event_file_reads_as_what_it_holds_or_one_error(tmp_path) -> None:
    """Event files with bytes overwritten or cut anywhere (a disk error, a copy cut short,
    a file that is no event file) give the curves they still hold or a GrokforecastError
    naming the run, never another exception."""
    import random
    import struct

    from tensorboardX import SummaryWriter

    from grokforecast.forecast.log_files import read_log

    with SummaryWriter(tmp_path / "whole") as writer:
        for step in range(0, 300, 10):
            writer.add_scalar("val/loss", 2.0 - step / 300, step)
        writer.add_hparams({"lr": 1e-3, "wd": 0.1}, {"hparam/accuracy": 0.0})
    files = [path.read_bytes() for path in sorted((tmp_path / "whole").rglob("events.out.tfevents.*"))]
    draw = random.Random(0)
    read = 0
    for case in range(300):
        damaged = bytearray(draw.choice(files))
        for _ in range(draw.randint(1, 20)):
            damaged[draw.randrange(len(damaged))] = draw.randrange(256)
        if case % 3 == 0:
            damaged = damaged[: draw.randrange(len(damaged))]
        run = tmp_path / f"damaged{case}"
        run.mkdir()
        (run / "events.out.tfevents.0.host").write_bytes(bytes(damaged))
        try:
            read_log(run)
            read += 1
        except GrokforecastError as error:
            assert str(error).startswith(f"{run}: ")
    assert read > 0

    def record(payload: bytes) -> bytes:  # a TFRecord, its CRCs left blank (they are not read)
        return struct.pack("<Q", len(payload)) + bytes(4) + payload + bytes(4)

    def field(number: int, payload: bytes) -> bytes:  # a length-delimited field
        return bytes([number << 3 | 2, len(payload)]) + payload

    value = field(1, b"val/loss") + bytes([2 << 3 | 5]) + b"\x00\x00"  # a float cut to 2 bytes
    summary_as_a_number = bytes([2 << 3, 5, 5 << 3, 7])  # step 5, then a varint where the summary is
    for name, payload in [("cut_float", field(5, field(1, value))), ("varint_summary", summary_as_a_number)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "events.out.tfevents.0.host").write_bytes(record(payload))
        with pytest.raises(GrokforecastError, match=f"{name}: holds no rows"):
            read_log(tmp_path / name)


def test_a_log_kept_as_rows_reads_as_its_columns_at_its_logged_steps(quadratic: list) -> None:
    """A log of rows (HuggingFace's ``trainer.state.log_history``: a training row per
    step, an evaluation row at each evaluation, each with its ``step``) forecasts as the
    same curves given as columns with their steps; so does a DataFrame of those rows."""
    import pandas as pd

    history = probe_history(quadratic[5], 0.1)
    logged = {
        key: history[key] for key in ("train_loss", "val_loss", "val_loss_steps", "val_acc", "val_acc_steps")
    }
    expected = GrokForecaster.pretrained("train_loss+val_loss+val_acc").predict_logit(logged)
    measured = zip(history["val_loss"].tolist(), history["val_acc"].tolist(), strict=True)
    evaluations = dict(zip(history["val_loss_steps"].tolist(), measured, strict=True))
    rows: list[dict] = []
    for step, loss in enumerate(history["train_loss"]):
        rows.append({"loss": float(loss), "learning_rate": 1e-3, "epoch": step / 50, "step": step})
        if step in evaluations:
            eval_loss, eval_accuracy = evaluations[step]
            rows.append(
                {"eval_loss": eval_loss, "eval_accuracy": eval_accuracy, "eval_runtime": "0.1s", "step": step}
            )
    every_curve = GrokForecaster.pretrained()
    assert every_curve.predict_logit(rows) == pytest.approx(expected)
    assert every_curve.predict_logit(pd.DataFrame(rows)) == pytest.approx(expected)
    assert GrokForecaster.pretrained_for(rows).groups == ("train_loss", "val_loss", "val_acc")
    # The step column is each curve's steps: evaluations at uneven steps keep them.
    curve = {"val_loss": [3.0, 2.9, 2.0, 1.9], "val_acc": [0.1, 0.2, 0.5, 0.9]}
    uneven = [0, 10, 20, 200]
    given = {**curve, "val_loss_steps": uneven, "val_acc_steps": uneven}
    at_given_steps = every_curve.predict_logit(given)
    assert every_curve.predict_logit({**curve, "step": uneven}) == pytest.approx(at_given_steps)
    assert every_curve.predict_logit(curve) != pytest.approx(at_given_steps)
    for not_a_history in (42, [1.0, 2.0], []):
        with pytest.raises(ValueError, match="a history is a mapping of curves"):
            every_curve.predict_logit(not_a_history)


def test_a_shipped_calibration_refits_on_the_curves_its_histories_hold(quadratic: list) -> None:
    logged = [
        {key: value for key, value in probe_history(r, 0.1).items() if not key.startswith("weight_norm")}
        for r in quadratic
    ]
    refitted = GrokForecaster.pretrained().fit(logged, [r.grokked for r in quadratic])
    assert refitted.groups == ("train_loss", "train_acc", "val_loss", "val_acc") and not refitted.shipped
    mine = GrokForecaster(("train_loss", "train_acc", "val_loss", "val_acc")).fit(
        logged, [r.grokked for r in quadratic]
    )
    assert refitted.predict_logit(logged[0]) == pytest.approx(mine.predict_logit(logged[0]))


def test_a_forecaster_fitted_by_its_caller_reads_exactly_its_groups(quadratic: list) -> None:
    refitted = GrokForecaster.pretrained("train_loss+val_acc")
    refitted.fit([probe_history(r, 0.1) for r in quadratic], [r.grokked for r in quadratic])
    history = probe_history(quadratic[0], 0.1)
    with pytest.raises(ValueError, match="history has no 'val_acc' series"):
        refitted.predict_proba({"train_loss": history["train_loss"]})
    with pytest.raises(ValueError, match="val_acc has a non-finite value nan"):
        refitted.predict_proba({**history, "val_acc": np.full_like(history["val_acc"], np.nan)})


def test_the_shipped_forecaster_is_better_than_chance_on_its_corpus() -> None:
    records = load_corpus()
    forecaster = GrokForecaster.pretrained("full")
    p = np.array([forecaster.predict_proba(probe_history(r, 0.1)) for r in records])
    grokked = np.array([r.grokked for r in records])
    assert p[grokked].mean() > p[~grokked].mean()


def test_a_run_far_outside_the_corpus_leans_but_does_not_saturate(quadratic: list) -> None:
    forecaster = GrokForecaster.pretrained("full")
    history = probe_history(quadratic[0], 0.1)
    odd = {**history, "weight_norm": history["weight_norm"] * 1e6, "train_loss": history["train_loss"] * 1e6}
    bound = forecaster.predict_logit(odd)
    assert abs(bound) <= np.abs(forecaster.to_dict()["weights"]).sum() * CLIP + abs(forecaster._intercept)
    assert 1e-6 < forecaster.predict_proba(odd) < 1 - 1e-6


def test_explain_names_the_features_that_moved_the_forecast(quadratic: list) -> None:
    explanation = GrokForecaster.pretrained("full").explain(probe_history(quadratic[0], 0.1), top=2)
    assert len(explanation) == 2 and set(explanation) <= set(GrokForecaster().features)


def test_feature_extraction_is_explicit_about_missing_or_bad_series() -> None:
    with pytest.raises(ValueError, match="history has no 'val_acc' series"):
        extract_features({"train_loss": np.linspace(2, 1, 100)}, ("val_acc",))
    with pytest.raises(ValueError, match="train_loss has 5 points; at least 6"):
        extract_features({"train_loss": [2.0, 1.5, 1.0, 0.9, 0.8]}, ("train_loss",))
    assert extract_features({"train_loss": [2.0, 1.5, 1.0, 0.9, 0.8, 0.85]}, ("train_loss",))
    with pytest.raises(ValueError, match="val_loss has 1 point; at least 2"):
        extract_features({"val_loss": [2.0]}, ("val_loss",))
    with pytest.raises(ValueError, match="non-finite value nan at index 2"):
        extract_features({"train_loss": [2.0, 1.5, np.nan, 1.0, 0.9, 0.8]}, ("train_loss",))
    with pytest.raises(ValueError, match=r"history\['hyperparameters'\] must hold lr and weight_decay, or"):
        extract_features({"hyperparameters": {"lr": 1e-3}}, ("hyperparameters",))
    with pytest.raises(ValueError, match=r"hyperparameters \{'data_fraction': 1.5\} are out of range"):
        extract_features({"hyperparameters": {"wd": 1.0, "lr": 1e-3, "fraction": 1.5}}, ("hyperparameters",))


def test_hyperparameters_a_run_does_not_give_are_read_at_the_fitted_mean_and_never_fitted_on(
    quadratic: list,
) -> None:
    """A run that gives one set of hyperparameters (lr and weight decay, on a fixed data
    set) has the other set's features read at the fitted corpus's mean, and named; a fit
    refuses runs without them rather than learn from a guess."""
    assert set(HYPERPARAMETER_FEATURE_INPUTS) == set(FEATURE_GROUPS["hyperparameters"])
    history = probe_history(quadratic[5], 0.1)
    lr_and_decay = {
        "lr": history.hyperparameters["lr"],
        "weight_decay": history.hyperparameters["weight_decay"],
    }
    features = extract_features({"hyperparameters": lr_and_decay}, ("hyperparameters",))
    assert np.isnan(features["data_fraction"]) and np.isfinite(features["log_decay_rate"])
    as_text = {"learning_rate": "1e-3", "wd": "1", "train_fraction": "auto"}  # a config saved as text
    features = extract_features({"hyperparameters": as_text}, ("hyperparameters",))
    assert features["log_decay_rate"] == pytest.approx(-3.0) and np.isnan(features["data_fraction"])
    forecaster = GrokForecaster.pretrained("full+hyperparameters")
    partial = history.with_hyperparameters(lr_and_decay)
    assessment = forecaster.assess(partial)
    assert assessment.at_mean == ("data_fraction", "log_data_fraction")
    assert forecaster.assess(history).at_mean == ()
    assert all(np.isfinite(list(assessment.features.values())))
    fraction_only = history.with_hyperparameters({"data_fraction": history.hyperparameters["data_fraction"]})
    assert forecaster.assess(fraction_only).at_mean == ("log_decay_rate",)
    histories = [probe_history(r, 0.1) for r in quadratic[:12]]
    histories[3] = histories[3].with_hyperparameters(lr_and_decay)
    with pytest.raises(
        ValueError, match=r"fitting needs every hyperparameter of every run; features \['data_fraction'"
    ):
        GrokForecaster((*CURVE_GROUPS, "hyperparameters")).fit(histories, [r.grokked for r in quadratic[:12]])


def test_a_loss_that_underflowed_to_zero_reads_as_its_smallest_positive_value() -> None:
    """A float32 cross-entropy is exactly 0 once every example's margin is large."""
    loss = np.geomspace(2.0, 1e-7, 60)
    underflowed = np.where(loss < 1e-6, 0.0, loss)
    floored = np.where(loss < 1e-6, underflowed[underflowed > 0].min(), loss)
    groups = ("train_loss", "val_loss")
    read = extract_features({"train_loss": underflowed, "val_loss": underflowed}, groups)
    assert read == extract_features({"train_loss": floored, "val_loss": floored}, groups)
    assert all(np.isfinite(value) for value in read.values())
    with pytest.raises(ValueError, match=r"val_loss has the value -0\.5; a loss is never negative"):
        extract_features({"val_loss": [1.0, -0.5]}, ("val_loss",))
    with pytest.raises(ValueError, match="val_loss starts at 0, as an accuracy does"):
        extract_features({"val_loss": [0.0, 0.5, 0.9]}, ("val_loss",))  # an accuracy


def test_two_evaluations_give_a_level_and_the_trend_between_them() -> None:
    """An epoch loop's validation series: the trend of two points is the change between
    them, per window, as a long series' is over its last half."""
    features = extract_features({"val_loss": [4.0, 2.0], "val_loss_steps": [0, 300]}, ("val_loss",))
    assert features["val_loss_last"] == pytest.approx(np.log(2.0))
    assert features["val_loss_slope"] == pytest.approx(np.log(2.0) - np.log(4.0))
    long = extract_features(
        {"val_loss": np.geomspace(4.0, 2.0, 61), "val_loss_steps": np.arange(0, 305, 5)}, ("val_loss",)
    )
    assert long["val_loss_slope"] == pytest.approx(features["val_loss_slope"])


def test_bad_forecaster_arguments_and_states_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="groups=\\['spectrum'\\]"):
        GrokForecaster(("spectrum",))
    with pytest.raises(ValueError, match="features=\\['mobility'\\]"):
        GrokForecaster(("val_acc",), features=("mobility",))
    with pytest.raises(GrokforecastError, match="not fitted"):
        GrokForecaster().predict_proba({"train_loss": np.linspace(2, 1, 100)})
    history = {"val_acc": np.linspace(0, 0.5, 20)}
    with pytest.raises(ValueError, match="all one class"):
        GrokForecaster(("val_acc",)).fit([history, history], [True, True])
    with pytest.raises(ValueError, match="inputs='everything'"):
        GrokForecaster.pretrained("everything")
    (tmp_path / "old.json").write_text(json.dumps({"format": "grokforecast-forecaster", "version": 0}))
    with pytest.raises(GrokforecastError, match="version 1"):
        GrokForecaster.load(tmp_path / "old.json")


def test_the_grok_time_law_recovers_its_constants() -> None:
    r = np.array([0.2, 0.3, 0.4, 0.5, 0.7, 0.9])
    law = gf.fit_grok_time(r, 120.0 * r**-1.5 + 40.0)
    assert (law.a, law.gamma, law.b) == pytest.approx((120.0, 1.5, 40.0), rel=1e-3)
    np.testing.assert_allclose(
        law.predict([0.25, 0.6]), 120.0 * np.array([0.25, 0.6]) ** -1.5 + 40.0, rtol=1e-3
    )


def test_the_grok_time_law_on_the_corpus_falls_with_the_data_fraction(quadratic: list) -> None:
    grokked = [r for r in quadratic if r.grokked and r.config["weight_decay"] == 1.0]
    law = fit_grok_time([r.config["data_fraction"] for r in grokked], [r.times.t4 for r in grokked])
    assert law.predict(0.2) > law.predict(0.4)


@pytest.mark.parametrize(
    ("r", "t", "message"),
    [
        ([0.3, 0.3, 0.4], [1, 2, 3], "at least 3 distinct"),
        ([0.0, 0.3, 0.4], [1, 2, 3], "must lie in \\(0, 1\\]"),
        ([0.2, 0.3, 0.4], [1, np.inf, 3], "finite"),
        ([0.2, 0.3], [1, 2, 3], "r has 2 values but t has 3"),
    ],
)
def test_the_grok_time_law_refuses_bad_input(r: list, t: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_grok_time(r, t)


def test_held_out_cell_scores_are_the_mean_over_repeated_splits() -> None:
    from grokforecast.bench.forecast_eval import VARIANTS, evaluate

    records = [*load_corpus("quadratic_add97"), *load_corpus("digits_omnigrok")]
    repeated = evaluate(records, fractions=(0.1,), repeats=2)
    singles = [evaluate(records, fractions=(0.1,), seed=seed, repeats=1) for seed in (0, 1)]
    assert {(s.variant, s.protocol) for s in repeated} == {
        (v, p) for v in VARIANTS for p in ("cells", "family")
    }
    for index, score in enumerate(repeated):
        one, other = singles[0][index], singles[1][index]
        assert (score.variant, score.protocol, score.workload) == (one.variant, one.protocol, one.workload)
        assert score.auc == pytest.approx((one.auc + other.auc) / 2)
        assert score.auc_range == (min(one.auc, other.auc), max(one.auc, other.auc))
        if score.protocol == "family":  # one split only: every repeat is the same
            assert one.auc == other.auc


def test_a_history_evaluated_only_a_few_times_keeps_its_per_step_training_curves(quadratic: list) -> None:
    history = probe_history(quadratic[0], 0.1)
    epochs = history.evaluated_only(3)
    probe = history.newest_step
    for name in ("val_loss", "val_acc", "weight_norm"):
        assert epochs[f"{name}_steps"].tolist() == [0, probe // 2, probe]
        assert epochs[name].tolist() == [
            history[name][history[f"{name}_steps"] == s][0] for s in (0, probe // 2, probe)
        ]
    assert epochs["train_loss"].tolist() == history["train_loss"].tolist()
    with pytest.raises(ValueError, match="times=1"):
        history.evaluated_only(1)


def test_the_forecast_benchmark_scores_runs_seen_once_an_epoch_with_the_forecaster_fitted_as_shipped() -> (
    None
):
    from grokforecast.bench.forecast_eval import evaluate

    records = [*load_corpus("quadratic_add97"), *load_corpus("digits_omnigrok")]
    every = evaluate(records, fractions=(0.1,), repeats=1)
    epochs = evaluate(records, fractions=(0.1,), repeats=1, evaluations=2)
    assert [(s.variant, s.protocol, s.workload) for s in epochs] == [
        (s.variant, s.protocol, s.workload) for s in every
    ]
    by_variant = {
        (s.variant, s.workload): (a.auc, s.auc)
        for a, s in zip(every, epochs, strict=True)
        if s.protocol == "family"
    }
    assert (
        by_variant[("train_loss", "quadratic_add97")][0] == by_variant[("train_loss", "quadratic_add97")][1]
    )
    assert any(full != thinned for full, thinned in by_variant.values())


def test_the_forecast_benchmark_scores_a_study_on_a_fixed_data_set_within_its_groups() -> None:
    """``--swept lr,weight_decay``: each corpus cut into the studies that share a data
    fraction, those of both outcomes scored, the forecaster not told the fraction."""
    from grokforecast.bench.forecast_eval import evaluate

    records = [*load_corpus("quadratic_add97"), *load_corpus("digits_omnigrok")]
    every = {(s.variant, s.protocol, s.workload): s for s in evaluate(records, fractions=(0.1,), repeats=1)}
    swept = evaluate(records, fractions=(0.1,), repeats=1, swept=("lr", "weight_decay"))
    for score in swept:
        runs = [r for r in records if r.corpus == score.workload and r.diverged_at is None]
        studies = {r.config["data_fraction"] for r in runs}
        mixed = [[r for r in runs if r.config["data_fraction"] == f] for f in studies]
        mixed = [study for study in mixed if len({r.grokked for r in study}) == 2]
        assert (score.n, score.positives) == (sum(map(len, mixed)), sum(r.grokked for s in mixed for r in s))
    moved = [
        s.auc != pytest.approx(every[s.variant, s.protocol, s.workload].auc)
        for s in swept
        if "hyper" in s.variant
    ]
    assert any(moved)


@pytest.mark.parametrize("every", [1, 10])
def test_the_band_energy_is_a_part_of_the_activity_however_sparse_the_reports(every: int) -> None:
    """A loss reported every 10 steps up to step 150 is 16 points: its band energy must
    still measure the fast part of the residual, not repeat the activity."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 151, every)
    loss = np.exp(-steps / 50) * (1 + 0.05 * rng.normal(size=len(steps))) + 1e-3
    features = extract_features({"train_loss": loss, "train_loss_steps": steps}, ("train_loss",))
    assert features["log_band_energy"] < features["log_activity"] - 0.01


def test_the_grok_time_benchmark_forecasts_each_grokker_only_from_those_before_it(quadratic: list) -> None:
    from grokforecast.bench.grok_time_eval import MIN_GROKKED, PROBE_FRACTION, _loglinear, score_corpus

    rng = np.random.default_rng(0)
    design = np.column_stack([np.ones(30), rng.normal(size=(30, 3))])
    coefficients, spread = _loglinear(design, design @ np.array([5.0, -1.0, 0.5, -2.0]))
    assert spread < 0.1 and coefficients[0] == pytest.approx(
        5.0, abs=0.2
    )  # ridge shrinks the slopes a little
    score = score_corpus("quadratic_add97", quadratic, orders=2)
    assert score.grokked == sum(r.grokked for r in quadratic)
    assert score.forecasts == 2 * (score.grokked - MIN_GROKKED)
    assert (
        0.0 < score.loglinear_median_ape < score.loglinear_mape < 1.0 and 0.9 <= score.kept_below_upper <= 1
    )
    # The first passage forecasts only the grokkers that had not grokked by their probe.
    probe = PROBE_FRACTION * quadratic[0].config["steps"]
    late = [r.times.t4 > probe for r in quadratic if r.grokked]
    assert 0 < score.passage_forecasts <= score.forecasts and (score.passage_forecasts < score.forecasts) == (
        not all(late)
    )
    assert 0.0 < score.passage_median_ape < 1.0


def test_the_first_passage_forecast_follows_the_weight_norm_down_to_where_grokkers_grokked() -> None:
    from grokforecast.bench.grok_time_eval import _first_passage

    # Falling 0.01 a step in log norm, 0.5 to go: 50 steps past the probe.
    assert _first_passage(-0.5, -0.01, probe=100, fallback=999) == pytest.approx(150)
    assert _first_passage(-0.5, 0.002, probe=100, fallback=999) == 999  # not shrinking: no passage
    assert _first_passage(-0.5, float("nan"), probe=100, fallback=999) == 999


def test_accuracies_in_per_cent_forecast_as_the_same_fractions(quadratic: list) -> None:
    history = dict(probe_history(quadratic[0], 0.1))
    in_per_cent = {**history, "train_acc": history["train_acc"] * 100, "val_acc": history["val_acc"] * 100}
    forecaster = GrokForecaster.pretrained("full")
    assert forecaster.predict_logit(in_per_cent) == pytest.approx(forecaster.predict_logit(history))
    # A validation accuracy at chance on 113 classes stays below 1 per cent; the training
    # accuracy beside it says the history is in per cent.
    at_chance = {"val_acc": np.full(20, 0.88), "train_acc": np.linspace(0.88, 100, 20)}
    assert extract_features(at_chance, ("val_acc",))["val_acc_last"] == pytest.approx(0.0088)
    with pytest.raises(ValueError, match="val_acc has the value 150; give accuracies as fractions"):
        extract_features({"val_acc": np.linspace(0, 150, 20)}, ("val_acc",))


def test_the_calibration_for_a_history_reads_all_it_holds_however_its_params_are_spelled(
    quadratic: list,
) -> None:
    history = probe_history(quadratic[0], 0.1)
    own_words = {
        "train_loss": history["train_loss"],
        "train_loss_steps": history["train_loss_steps"],
        "val_acc": history["val_acc"],
        "val_acc_steps": history["val_acc_steps"],
        "hyperparameters": {
            "learning_rate": quadratic[0].config["lr"],
            "wd": quadratic[0].config["weight_decay"],
            "train_fraction": quadratic[0].config["data_fraction"],
        },
    }
    forecaster = GrokForecaster.pretrained_for(own_words)
    assert forecaster.groups == ("train_loss", "val_acc", "hyperparameters")
    ours = {**own_words, "hyperparameters": history["hyperparameters"]}
    assert forecaster.predict_logit(own_words) == forecaster.predict_logit(ours)
    assert GrokForecaster.pretrained_for(history).groups == tuple(FEATURE_GROUPS)
    assert GrokForecaster.pretrained_for({"test_acc": [0.1, 0.2, 0.3, 0.4]}).groups == ("val_acc",)
    with pytest.raises(ValueError, match="holds none of the curves"):
        GrokForecaster.pretrained_for({"perplexity": [9.0, 8.0, 7.0, 6.0]})
