import pytest

from grokforecast.errors import ConfigError
from grokforecast.training import TrainConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": 0.0}, "lr=0.0 must be"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0"),
        ({"beta2": 1.0}, "beta2=1.0"),
        ({"steps": 0}, "steps=0"),
        ({"data_fraction": 1.0}, "data_fraction=1.0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"grokfast": "fir"}, "grokfast='fir'"),
        ({"grokfast_window": 0}, "grokfast_window=0"),
        ({"grok_threshold": 1.5}, "grok_threshold=1.5"),
    ],
)
def test_bad_settings_are_refused_with_their_value(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)


def test_unknown_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown training setting 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_budget_and_device_do_not_change_the_fingerprint() -> None:
    base = TrainConfig()
    assert TrainConfig(steps=10, device="cpu").fingerprint() == base.fingerprint()
    assert TrainConfig(lr=2e-3).fingerprint() != base.fingerprint()
    assert base.trajectory_differences(TrainConfig(lr=2e-3, steps=5)) == ["lr"]


def test_grokfast_lamb_defaults_follow_the_paper() -> None:
    assert TrainConfig(grokfast="ema").filter_lamb == 2.0
    assert TrainConfig(grokfast="ma").filter_lamb == 5.0
    assert TrainConfig(grokfast="ma", grokfast_lamb=1.5).filter_lamb == 1.5
