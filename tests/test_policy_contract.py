"""The stopping policy's contract, checked once for both backends.

The same recorded runs are fed to the Optuna pruner (in a real Optuna study, reported as
the sweep's trials report them: the training loss at a stride, every curve read from
the trainer) and to the Ray Tune scheduler (as the results the sweep's trainable sends):
both must decide the same, at the same step, for the same reason.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any, NamedTuple

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from recorded import results

from grokforecast import GrokForecaster, GrokForecastScheduler, HjorthPruner
from grokforecast.backends.optuna.monitor import register_history_source
from grokforecast.core.decision import drawn_to_explore
from grokforecast.corpus import load_corpus
from grokforecast.errors import ConfigError
from grokforecast.history import History
from grokforecast.records import RunRecord
from grokforecast.sweep.outcomes import grok_label, probed_outcomes
from grokforecast.vocabulary import DECISION_ATTR, HYPERPARAMETERS, RUNG_DECISIONS_ATTR, TRIAL_NUMBER

optuna.logging.set_verbosity(optuna.logging.WARNING)
QUADRATIC = load_corpus("quadratic_add97")  # 600 steps, evaluated every 5: probe at 60
REPORT_EVERY = 10


class Ran(NamedTuple):
    """One trial fed to a backend: its stored decision record, where it was stopped, and
    the records of its later rungs."""

    decision: dict[str, Any] | None
    stopped_at: int | None
    rungs: tuple[dict[str, Any], ...] = ()


class _ReportedCurves:
    """The history source of a trial fed from results (as the sweep's trainer is)."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.newest_step: int | None = None

    def add(self, result: dict[str, Any]) -> None:
        step = result["step"]
        for name in ("train_loss", "train_acc"):
            dense = result[f"{name}_interval"]
            self.points[name].extend((step - len(dense) + i, v) for i, v in enumerate(dense))
        for name in ("val_loss", "val_acc", "weight_norm"):
            self.points[name].append((step, result[name]))
        self.newest_step = step

    def history(self, until: int | None = None) -> History:
        history = History.from_points(self.points)
        return history if until is None else history.until(until)


class OptunaBackend:
    """Feeds records to a :class:`HjorthPruner` in a real Optuna study."""

    def __init__(
        self, storage: str | None = None, given: tuple[str, ...] = HYPERPARAMETERS, **options: Any
    ) -> None:
        self.stopper = HjorthPruner(**options)
        self.given = given  # the hyperparameters among a trial's parameters
        self.study = optuna.create_study(
            storage=storage,
            study_name="contract",
            direction="maximize",
            pruner=self.stopper,
            load_if_exists=True,
        )

    def run(self, record: RunRecord, reports: list[dict] | None = None) -> Ran:
        stopped_at = []

        def objective(trial: optuna.Trial) -> float:
            for name in self.given:
                trial.suggest_float(name, record.config[name], record.config[name])
            source = _ReportedCurves()
            register_history_source(trial, source)
            for result in reports or results(record):
                source.add(result)
                losses, step = result["train_loss_interval"], result["step"]
                for offset, loss in enumerate(losses):
                    at = step - len(losses) + offset
                    if at % REPORT_EVERY == 0 or offset == len(losses) - 1:
                        trial.report(loss, at)
                if losses and trial.should_prune():
                    stopped_at.append(step)
                    raise optuna.TrialPruned()
            trial.set_user_attr("grokked", record.grokked)
            return record.curves.val_acc[-1]

        self.study.optimize(objective, n_trials=1)
        trial = self.study.trials[-1]
        return Ran(
            trial.user_attrs.get(DECISION_ATTR),
            stopped_at[0] if stopped_at else None,
            tuple(trial.user_attrs.get(RUNG_DECISIONS_ATTR, ())),
        )

    def taught(self) -> dict:
        return probed_outcomes(self.study.trials, grok_label(self.study, None))


class RayBackend:
    """Feeds records to a :class:`GrokForecastScheduler` as Tune hands it results."""

    def __init__(self, given: tuple[str, ...] = HYPERPARAMETERS, **options: Any) -> None:
        self.stopper = GrokForecastScheduler(**options)
        self.trials = 0
        self.fixed = set(HYPERPARAMETERS) - set(given)  # left out of a trial's config

    def run(self, record: RunRecord, reports: list[dict] | None = None) -> Ran:
        number, self.trials = self.trials, self.trials + 1
        given = {key: value for key, value in record.config.items() if key not in self.fixed}
        trial_id, config = f"tune-{number}", {**given, TRIAL_NUMBER: number}
        stopped_at = None
        for result in reports or results(record):
            if self.stopper.decide(trial_id, result, config) == TrialScheduler.STOP:
                stopped_at = result["step"]
                break
        else:
            self.stopper.learn(trial_id, {"grokked": record.grokked}, config)
        decision = self.stopper.decision(trial_id)
        rungs = tuple(record.to_dict() for record in self.stopper.rung_decisions(trial_id))
        return Ran(None if decision is None else decision.to_dict(), stopped_at, rungs)

    def taught(self) -> dict:
        return self.stopper.get_state()["outcomes"]


BACKENDS = {"optuna": OptunaBackend, "ray": RayBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> type:
    return BACKENDS[request.param]


def _decisions(backend: type, records: list[RunRecord], **options: Any) -> list[tuple]:
    fed = backend(**options)
    ran = [fed.run(record) for record in records]
    return [
        (
            r.decision["decision"],
            r.decision["step"],
            r.decision["probability"],
            r.decision["calibrated_on"],
            r.decision["rule"],
            r.stopped_at,
        )
        for r in ran
    ]


@pytest.mark.parametrize(
    "options",
    [
        {
            "warm_up_keep_top": None,
            "threshold": 0.5,
            "exploration": 0.3,
            "min_calibration_trials": 6,
            "seed": 3,
        },
        {"keep_top": 0.5, "n_min_probed": 4, "exploration": 0.1, "recalibrate": False},
        {"exploration": 0.3, "min_calibration_trials": 6, "seed": 3},
    ],
    ids=["threshold-recalibrated-exploring", "keep-top", "ranked-until-the-study-model-learns"],
)
def test_both_backends_decide_the_same_at_the_same_step(options: dict) -> None:
    records = QUADRATIC[:30]
    optuna_decisions = _decisions(OptunaBackend, records, probe_step=60, **options)
    ray_decisions = _decisions(RayBackend, records, probe_step=60, **options)
    for on_optuna, on_ray in zip(optuna_decisions, ray_decisions, strict=True):
        assert on_optuna[:2] == on_ray[:2] and on_optuna[3:] == on_ray[3:]
        assert on_optuna[2] == pytest.approx(on_ray[2], abs=1e-12)
    assert {d[1] for d in optuna_decisions} == {60}
    assert {d[0] for d in optuna_decisions} == {"keep", "prune", "explore"}
    assert all(d[5] == (60 if d[0] == "prune" else None) for d in optuna_decisions)
    rules = [d[4] for d in optuna_decisions]
    if "keep_top" in options:
        assert all("warm-up" in rule for rule in rules[:3])
    else:
        assert optuna_decisions[-1][3] > 0  # the study model learned from the trials that finished
    if "warm_up_keep_top" not in options and "keep_top" not in options:
        learned = next(i for i, d in enumerate(optuna_decisions) if d[3] > 0)
        assert all(rule.startswith("warm_up_keep_top 0.6") for rule in rules[4:learned])
        assert all(rule == "threshold 0.2" for rule in rules[learned:] if "grokked" not in rule)


def _moved_alike_on_both_backends(records: list[RunRecord], options: dict) -> None:
    """Both backends decide ``records`` alike under ``options``, and the forecasts differ
    from those of the default options (the options were read)."""
    decided = _decisions(OptunaBackend, records, **options)
    for on_optuna, on_ray in zip(decided, _decisions(RayBackend, records, **options), strict=True):
        assert on_optuna[:2] + on_optuna[3:] == on_ray[:2] + on_ray[3:]
        assert on_optuna[2] == pytest.approx(on_ray[2], abs=1e-12)
    default = _decisions(OptunaBackend, records, probe_step=options["probe_step"])
    assert [d[2] for d in decided] != pytest.approx([d[2] for d in default], abs=1e-3)


def test_a_forecaster_fitted_without_the_family_decides_alike_and_says_so() -> None:
    # The quadratic corpus judged as a family the forecaster never saw: both backends
    # refit the same calibration without it, and their records name it.
    records, options = QUADRATIC[:8], {"probe_step": 60, "fitted_without": ("modular_quadratic",)}
    _moved_alike_on_both_backends(records, options)
    record = OptunaBackend(**options).run(records[0]).decision
    assert record["forecaster"] == "full+hyperparameters (fitted without modular_quadratic)"


def test_a_study_on_a_fixed_data_set_is_forecast_alike_from_its_lr_and_weight_decay() -> None:
    # Trials whose parameters hold the learning rate and weight decay only: both backends
    # forecast with them, read the data fraction at the corpus's mean, and say so.
    records, options = QUADRATIC[:8], {"probe_step": 60, "given": ("lr", "weight_decay")}
    _moved_alike_on_both_backends(records, options)
    for backend in BACKENDS.values():
        record = backend(**options).run(records[0]).decision
        assert record["forecaster"] == "full+hyperparameters"
        assert (
            record["note"]
            == "data_fraction, log_data_fraction read at the fitted corpus's mean (hyperparameters not given)"
        )


def test_exploration_shrinks_as_the_study_model_gets_outcomes(backend: type) -> None:
    # The rule prunes every trial (threshold 1); each one explored runs on and teaches.
    fed = backend(
        probe_step=60, threshold=1.0, warm_up_keep_top=None, exploration=1.0, min_calibration_trials=2, seed=5
    )
    decisions = [fed.run(record).decision["decision"] for record in QUADRATIC[:16]]
    taught, expected = 0, []
    for number in range(16):
        explored = drawn_to_explore(5, number, min(1.0, 2 / max(taught, 1)))
        expected.append("explore" if explored else "prune")
        taught += explored
    assert decisions == expected
    assert decisions[:3] == ["explore"] * 3 and decisions.count("prune") >= 4


def test_nothing_is_stopped_before_the_probe_and_a_decision_stands(backend: type) -> None:
    pruning = backend(probe_step=60, threshold=1.0, warm_up_keep_top=None, exploration=0.0)
    assert [pruning.run(r).stopped_at for r in QUADRATIC[:4]] == [60] * 4
    keeping = backend(probe_step=60, threshold=0.0, warm_up_keep_top=None)
    ran = [keeping.run(r) for r in QUADRATIC[:4]]
    assert [(r.decision["decision"], r.decision["step"], r.stopped_at) for r in ran] == [
        ("keep", 60, None)
    ] * 4


def test_a_diverged_training_loss_is_pruned_at_once_with_its_step(backend: type) -> None:
    record = QUADRATIC[0]
    reports = results(record)
    for result in reports:
        losses = result["train_loss_interval"]
        result["train_loss_interval"] = [
            math.nan if result["step"] - len(losses) + i >= 23 else v for i, v in enumerate(losses)
        ]
    ran = backend(probe_step=60).run(record, reports)
    assert ran.stopped_at == 25
    assert ran.decision["decision"] == "prune" and ran.decision["probability"] is None
    assert ran.decision["reason"] == "prune at step 23: diverged: non-finite train_loss at step 23"


def test_a_history_too_short_to_read_is_kept_with_the_reason_and_one_warning(
    backend: type, caplog: pytest.LogCaptureFixture
) -> None:
    fed = backend(probe_step=5)  # by step 5: five training losses, one evaluation, no accuracy
    with caplog.at_level(logging.WARNING, logger="grokforecast.core.policy"):
        reports = [
            [{**result, "train_acc_interval": []} for result in results(record, until=200)[1:]]
            for record in QUADRATIC[:2]
        ]
        ran = [
            fed.run(record, fed_reports) for record, fed_reports in zip(QUADRATIC[:2], reports, strict=True)
        ]
    for r in ran:
        assert r.stopped_at is None and r.decision["decision"] == "keep" and r.decision["step"] == 5
        assert r.decision["reason"].startswith("keep at step 5: no forecast (train_loss has 5 points")
    warnings = [m for m in caplog.messages if "cannot forecast trial" in m]
    assert len(warnings) == 1 and "raise probe_step" in warnings[0]


def test_a_training_loss_too_short_for_its_signature_is_left_out_of_the_forecast(backend: type) -> None:
    fed = backend(probe_step=5)  # by step 5: five training losses, two evaluations
    ran = fed.run(QUADRATIC[0], results(QUADRATIC[0], until=200))
    assert ran.decision["step"] == 5 and ran.decision["probability"] is not None
    assert ran.decision["forecaster"] == "train_acc+val_loss+val_acc+weight_norm+hyperparameters"


@pytest.mark.parametrize(("grok_threshold", "kept_as_grokked"), [(0.95, True), (0.98, False)])
def test_a_run_that_has_grokked_by_the_probe_is_kept_and_teaches_nothing(
    backend: type, grok_threshold: float, kept_as_grokked: bool
) -> None:
    record = load_corpus("digits_omnigrok")[22]  # 97 % by step 110, forecast 0.19 at 300
    fed = backend(
        probe_step=300, threshold=0.5, warm_up_keep_top=None, exploration=0.0, grok_threshold=grok_threshold
    )
    ran = fed.run(record)
    assert ran.decision["probability"] < 0.5
    if kept_as_grokked:
        assert ran.decision["decision"] == "keep" and ran.stopped_at is None
        assert "already >= 0.95 (grokked" in ran.decision["rule"]
        assert fed.taught() == {}  # it ran on whatever its forecast said
    else:  # the study's own threshold decides what "grokked" means
        assert ran.decision["decision"] == "prune" and ran.decision["rule"] == "threshold 0.5"


SECOND_LOOK = {"probe_step": 60, "rungs": (150, 300), "rung_prune_share": 0.4, "n_min_probed": 3}


def _judgements(ran: Ran) -> tuple:
    """What a trial's run says of its later rungs, comparable across backends."""
    rungs = tuple(
        (r["rung"], r["step"], r["decision"], r["rule"], round(r["probability"], 9)) for r in ran.rungs
    )
    return ran.decision["decision"], ran.decision["rung"], ran.stopped_at, rungs


def test_a_kept_trial_is_judged_again_at_each_rung_alike_on_both_backends() -> None:
    records = QUADRATIC[:24]
    optuna_fed, ray_fed = OptunaBackend(**SECOND_LOOK), RayBackend(**SECOND_LOOK)
    on_optuna = [_judgements(optuna_fed.run(record)) for record in records]
    on_ray = [_judgements(ray_fed.run(record)) for record in records]
    assert on_optuna == on_ray
    at_rung = [j for j in on_optuna if j[1] > 0]
    assert at_rung, "some kept trial is pruned at a later rung"
    for decision, rung, stopped_at, rungs in at_rung:  # pruned there, and stopped at that step
        assert decision == "prune" and stopped_at == SECOND_LOOK["rungs"][rung - 1]
        assert rungs[-1][:3] == (rung, stopped_at, "prune") and "judged at this rung" in rungs[-1][3]
    for decision, rung, stopped_at, rungs in on_optuna:
        if decision == "keep":  # judged at every rung, and kept at each
            assert [(r[0], r[1], r[2]) for r in rungs] == [(1, 150, "keep"), (2, 300, "keep")]
            assert stopped_at is None
        if decision in ("explore", "prune") and rung == 0:
            assert rungs == ()  # explored trials run on to teach; pruned ones are done
    grokked = [r for j in on_optuna for r in j[3] if "grokked" in r[3]]
    assert grokked and all(r[2] == "keep" for r in grokked)  # nothing left to forecast


def test_the_rungs_rank_against_forecasts_stored_in_the_study_across_a_resume(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    records = QUADRATIC[:24]
    one = OptunaBackend(**SECOND_LOOK)
    together = [_judgements(one.run(record)) for record in records]
    first = OptunaBackend(storage, **SECOND_LOOK)
    resumed = [_judgements(first.run(record)) for record in records[:12]]
    second = OptunaBackend(storage, **SECOND_LOOK)  # a new process: only the database remembers
    resumed += [_judgements(second.run(record)) for record in records[12:]]
    assert resumed == together
    ray_fed = RayBackend(**SECOND_LOOK)
    for record in records[:12]:
        ray_fed.run(record)
    restored = RayBackend(**SECOND_LOOK)
    restored.stopper.set_state(ray_fed.stopper.get_state())
    restored.trials = ray_fed.trials
    assert [_judgements(restored.run(record)) for record in records[12:]] == together[12:]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probe_step": 0}, "probe_step=0 must be at least 1"),
        ({"series": "accuracy"}, "series='accuracy' must be one of"),
        ({"threshold": 1.5}, r"threshold=1.5 must lie in \[0, 1\]"),
        ({"keep_top": 0.0}, r"keep_top=0.0 must lie in \(0, 1\]"),
        ({"exploration": -0.1}, r"exploration=-0.1 must lie in \[0, 1\]"),
        ({"n_min_probed": 0}, "n_min_probed=0 must be at least 1"),
        ({"min_calibration_trials": 1}, "min_calibration_trials=1 must be at least 2"),
        ({"grok_threshold": 0.0}, r"grok_threshold=0.0 must lie in \(0, 1\]"),
        ({"rungs": (5,)}, r"rungs=\(5,\) must be steps after probe_step=10, in increasing order"),
        ({"rungs": (30, 20)}, r"rungs=\(30, 20\) must be steps after probe_step=10"),
        ({"rung_prune_share": 1.0}, r"rung_prune_share=1.0 must lie in \[0, 1\)"),
        ({"forecaster": GrokForecaster()}, "forecaster is not fitted"),
        ({"fitted_without": ("transformer",)}, r"fitted_without=\('transformer',\) must name some of"),
        (
            {"fitted_without": ("modular_quadratic",), "forecaster": GrokForecaster.pretrained()},
            "give it or forecaster=, not both",
        ),
    ],
)
def test_bad_options_are_refused_alike_naming_the_value(options: dict, message: str) -> None:
    for stopper in (HjorthPruner, GrokForecastScheduler):
        with pytest.raises(ConfigError, match=message):
            stopper(**{"probe_step": 10, **options})
