from pathlib import Path

import pytest

from grokforecast.corpus import (
    HELD_OUT_GRIDS,
    SHIPPED_GRIDS,
    load_corpus,
    shipped_corpus_names,
    shipped_families,
)
from grokforecast.corpus.build import build, plan
from grokforecast.corpus.grid import load_grid
from grokforecast.errors import ConfigError, GrokforecastError
from grokforecast.training.workloads import problem_for

TINY_GRID = """
name = "tiny"
[fixed]
workload = "modular_mlp"
workload_options = { p = 11, embed_dim = 8, hidden = 16 }
steps = 20
eval_every = 5
[grid]
lr = [1e-3, 1e-2]
data_fraction = [0.5, 0.7]
"""


def _grid(tmp_path: Path, text: str = TINY_GRID) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_a_grid_is_the_product_of_its_lists_with_stable_ids(tmp_path: Path) -> None:
    cells = load_grid(_grid(tmp_path)).cells()
    assert len(cells) == 4
    assert {(c.config.lr, c.config.data_fraction) for c in cells} == {
        (1e-3, 0.5),
        (1e-3, 0.7),
        (1e-2, 0.5),
        (1e-2, 0.7),
    }
    assert [c.run_id for c in cells] == [c.run_id for c in load_grid(_grid(tmp_path)).cells()]


def test_build_runs_in_parallel_processes_and_resumes(tmp_path: Path) -> None:
    grid = load_grid(_grid(tmp_path))
    out = tmp_path / "corpus"
    first = plan(grid, out)
    records = list(build(first.todo[:3], out, workers=2))
    assert len(records) == 3
    assert all(len(r.curves.train_loss) == 20 for r in records)
    second = plan(grid, out)
    assert (second.done, len(second.todo)) == (3, 1)
    list(build(second.todo, out, workers=1))
    corpus = load_corpus(out)
    assert len(corpus) == 4 and plan(grid, out).todo == []
    assert corpus == sorted(corpus, key=lambda r: r.run_id)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\n[grid]\nlr = []\n", "grid.lr must be a non-empty list"),
        ("name = 'x'\n[fixed]\nlearning_rate = 1.0\n", "unknown training setting 'learning_rate'"),
        ("name = 'x'\n[grid]\ndata_fraction = [0.5, 1.5]\n", "data_fraction=1.5"),
        ("name = 'x'\nsteps = 3\n", "unknown key 'steps'"),
        ("name = \n", "is not valid TOML"),
    ],
)
def test_bad_grid_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_grid(_grid(tmp_path, text))
    assert "grid.toml" in str(error.value)


def test_an_unknown_corpus_is_named() -> None:
    with pytest.raises(GrokforecastError, match="no corpus at 'nowhere'"):
        load_corpus("nowhere")


def test_the_shipped_corpus_covers_what_the_forecaster_needs() -> None:
    records = load_corpus()
    workloads = {r.config["workload"] for r in records}
    assert len(shipped_corpus_names()) >= 3 and len(workloads) >= 3
    assert {r.config["batch_size"] is None for r in records} == {True, False}
    for name in shipped_corpus_names():
        labels = {r.grokked for r in load_corpus(name)}
        assert labels == {True, False}, f"{name} needs both grokking and non-grokking runs"
    # Omnigrok's runs memorize first and generalize later. Only in full-batch training:
    # with mini-batches a few training images can stay wrong after validation passed 95 %.
    omnigrok = [r for r in records if r.grokked and r.config["init_scale"] > 1]
    assert omnigrok and all(
        r.times.t4 > r.times.t2 for r in omnigrok if r.times.t2 is not None and r.config["batch_size"] is None
    )


def test_every_grid_the_package_holds_loads_and_held_out_families_are_not_shipped() -> None:
    held_out = sorted(HELD_OUT_GRIDS.glob("*.toml"))
    assert held_out, "the held-out grids are part of the package"
    for path in [*sorted(SHIPPED_GRIDS.glob("*.toml")), *held_out]:
        assert problem_for(load_grid(path).cells()[0].config)
    # A held-out family is measured by replaying it, never fitted on: no shipped runs of it.
    assert not {load_grid(path).fixed["workload"] for path in held_out} & set(shipped_families())
