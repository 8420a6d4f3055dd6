"""Command-line options made from :class:`TrainConfig`'s fields, so flags never drift."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from grokforecast.errors import ConfigError
from grokforecast.training.config import SETTING_HELP, TrainConfig

_TYPES: dict[str, Any] = {
    "float": float,
    "int": int,
    "str": str,
    "float | None": float,
    "int | None": int,
    "GrokfastKind": click.Choice(["none", "ema", "ma"]),
}


def train_config_options(command: Callable) -> Callable:
    """Add one ``--setting`` flag per :class:`TrainConfig` field, plus ``-o KEY=VALUE``."""
    for field in reversed(fields(TrainConfig)):
        if field.name == "workload_options":
            command = click.option(
                "-o",
                "--option",
                "workload_options",
                multiple=True,
                metavar="KEY=VALUE",
                help="A workload option, e.g. -o p=97 -o op=x/y (repeatable).",
            )(command)
            continue
        command = click.option(
            f"--{field.name.replace('_', '-')}",
            field.name,
            type=_TYPES[str(field.type)],
            default=field.default,
            show_default=True,
            help=SETTING_HELP[field.name],
        )(command)
    return command


def parse_workload_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("p=97", "op=x/y")`` -> ``{"p": 97, "op": "x/y"}`` (numbers parsed as JSON)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"workload option {pair!r} is not KEY=VALUE; write e.g. -o p=97")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def train_config_from_cli(settings: dict[str, Any]) -> TrainConfig:
    settings = dict(settings)
    settings["workload_options"] = parse_workload_options(settings["workload_options"])
    return TrainConfig(**settings)
