"""The study's vocabulary: every name and level that more than one module must agree on.

Attribute names are what a study database holds (and what dashboards and other workers
read back), so each is written here once; so is the validation accuracy that counts as
grokked.
"""

from __future__ import annotations

#: Validation accuracy a run must reach to count as generalized (>= 95 %, docs/science.md).
#: A study file may set another with ``[train] grok_threshold``; it then applies everywhere.
DEFAULT_GROK_THRESHOLD = 0.95

#: The series an objective may report to a stopper as its intermediate values.
SERIES = ("train_loss", "val_loss", "val_acc")
#: The curves a grokforecast trainer records that the forecaster reads.
CURVE_GROUPS = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")
#: Those of them measured at evaluations (every ``eval_every`` steps), not at every step.
EVALUATED_CURVES = ("val_loss", "val_acc", "weight_norm")
#: How other training loops commonly name the curves the forecaster reads (Keras's
#: ``loss`` and ``accuracy``, PyTorch Lightning's ``val_accuracy``, a held-out set called
#: ``test`` or ``valid``, a script's saved lists ``train_losses`` and ``test_accs``,
#: TensorBoard tags such as PyTorch's tutorial's ``Loss/train`` and Keras's
#: ``validation/epoch_loss``): a history key spelled so, in any case, is read as the
#: curve, and ``<spelling>_steps`` as its steps, where the history has no key of the
#: curve's own name.
SERIES_SPELLINGS = {
    "train_loss": (
        "loss",
        "training_loss",
        "train/loss",
        "train_losses",
        "loss/train",
        "train/epoch_loss",
    ),
    "train_acc": (
        "acc",
        "accuracy",
        "train_accuracy",
        "training_accuracy",
        "train/acc",
        "train/accuracy",
        "train_accs",
        "train_accuracies",
        "accuracy/train",
        "acc/train",
        "train/epoch_accuracy",
    ),
    "val_loss": (
        "valid_loss",
        "validation_loss",
        "eval_loss",
        "test_loss",
        "val/loss",
        "valid/loss",
        "eval/loss",
        "test/loss",
        "val_losses",
        "valid_losses",
        "test_losses",
        "validation/loss",
        "loss/val",
        "loss/validation",
        "loss/test",
        "validation/epoch_loss",
    ),
    "val_acc": (
        "val_accuracy",
        "valid_acc",
        "valid_accuracy",
        "validation_accuracy",
        "eval_acc",
        "eval_accuracy",
        "test_acc",
        "test_accuracy",
        "val/acc",
        "val/accuracy",
        "valid/acc",
        "valid/accuracy",
        "eval/accuracy",
        "test/acc",
        "test/accuracy",
        "val_accs",
        "val_accuracies",
        "test_accs",
        "test_accuracies",
        "validation/acc",
        "validation/accuracy",
        "accuracy/val",
        "accuracy/validation",
        "accuracy/test",
        "acc/val",
        "acc/test",
        "validation/epoch_accuracy",
    ),
    "weight_norm": ("param_norm", "parameter_norm", "weights_norm"),
}
#: How a log with one row per step or per evaluation names its step column, in any case,
#: best first (HuggingFace's ``log_history`` and Lightning's ``metrics.csv`` have both
#: ``step`` and ``epoch``; Weights & Biases exports ``_step``): the steps of every curve of
#: the same length that has no ``<curve>_steps``.
STEP_SPELLINGS = ("step", "global_step", "steps", "iteration", "_step", "trainer/global_step", "epoch")
#: The hyperparameters the forecaster reads, by the names a trial's parameters carry.
HYPERPARAMETERS = ("lr", "weight_decay", "data_fraction")
#: The hyperparameters read together, each set giving its own features: the data fraction,
#: and the learning rate with the weight decay (their product is Omnigrok's decay rate). A
#: run may give one set only (a study that sweeps lr and weight decay on a fixed data
#: set); the features of a set it does not give are read at the fitted corpus's mean.
HYPERPARAMETER_SETS = (("data_fraction",), ("lr", "weight_decay"))
#: How a user's search space commonly spells each of them: a trial parameter is recognised
#: by its last dotted or slashed part (``optimizer.lr``, ``optimizer/lr``), in lower case,
#: with ``-`` read as ``_``. A project spelling them otherwise passes a mapping.
HYPERPARAMETER_SPELLINGS = {
    "lr": ("lr", "learning_rate", "learningrate", "eta", "step_size"),
    "weight_decay": ("weight_decay", "weightdecay", "wd", "l2", "l2_penalty", "l2_reg"),
    "data_fraction": (
        "data_fraction",
        "train_fraction",
        "training_fraction",
        "frac_train",
        "train_frac",
        "train_ratio",
        "train_split",
        "fraction",
    ),
}

# -- trial attributes ------------------------------------------------------------------

#: User attribute holding the decision record as a dict (shown by dashboards).
DECISION_ATTR = "grokforecast_decision"
#: System attribute with what later trials need: the forecast's logit at the probe step.
PROBE_ATTR = "grokforecast:probe"
#: System attribute with the decision a stopper made ("keep", "prune", "explore"): it
#: stands for the rest of the trial. (Optuna hands a pruner the trial's system attributes
#: as stored, its user attributes as the objective last saw them.)
DECIDED_ATTR = "grokforecast:decided"
#: User attribute: the decision records of a kept trial's later rungs, in order.
RUNG_DECISIONS_ATTR = "grokforecast_rungs"
#: System attribute: a kept trial's forecast at each later rung it was judged at, by rung
#: (None where it had grokked): what other trials at that rung rank against.
RUNG_FORECASTS_ATTR = "grokforecast:rung_forecasts"
#: Trial system attribute: the trial was asked for past the study's target by a worker
#: that raced another; it ran nothing, is FAIL, and is never retried.
SURPLUS_ATTR = "grokforecast:surplus"
#: User attribute an objective may set to say whether the finished trial grokked.
GROKKED_ATTR = "grokked"
#: User attribute naming why a trial stopped: pruned, diverged, held, budget.
STOPPED_ATTR = "stopped"
#: User attribute of a trial that continued another's checkpoint: ``{"trial", "step"}``.
RESUMED_FROM_ATTR = "resumed_from"
#: User attribute naming the worker that runs the trial: ``host:process id``.
WORKER_ATTR = "worker"
#: What a finished trial records as user attributes, from its trainer's curves.
OUTCOME_KEYS = (
    STOPPED_ATTR,
    "steps_trained",
    "t2",
    "t4",
    GROKKED_ATTR,
    "final_train_acc",
    "final_val_acc",
    "best_val_acc",
    "final_val_loss",
    "final_weight_norm",
    "diverged_at",
)

# -- study attributes ------------------------------------------------------------------

#: Study user attribute holding the study file's text, so any worker can rebuild the plan.
SPEC_ATTR = "grokforecast_spec"
#: Study user attribute with the study file's name.
SPEC_FILE_ATTR = "grokforecast_spec_file"

# -- Ray Tune results and configs ------------------------------------------------------

#: A result key ``<series>_interval`` holds that series' value at every step since the
#: previous result (the trainer's dense per-step curve); ``<series>`` alone is one value.
INTERVAL_SUFFIX = "_interval"
#: Config key naming the Optuna trial a Tune trial is (set by grokforecast's Ray backend):
#: exploration draws and outcomes are keyed by it, as the Optuna pruner's are.
TRIAL_NUMBER = "optuna_trial_number"
