"""The text recipe's report checks the targets the user gave, and only those; with none, the most compressed
candidate is the final artifact."""

from typing import Any

import pytest

from lightning_distill.recipes.text import TextRecipeSettings, add_common_options, common_settings
from lightning_distill.recipes.text.report import _target_markdown, target_check


def _settings(**targets: float) -> TextRecipeSettings:
    return TextRecipeSettings("configs", "t", {}, "tok", "teacher", None, None, **targets)


def _row(name: str, speedup: float, size: float, delta: float) -> dict[str, Any]:
    return {
        "name": name,
        "speedup_vs_reference": speedup,
        "size_fraction_of_reference": size,
        "accuracy_delta_vs_reference": delta,
    }


ROW = _row("student int8", 9.97, 0.115, -0.004)


def test_without_targets_nothing_is_checked_and_every_candidate_qualifies() -> None:
    check = target_check(ROW, _settings())
    assert check == {
        "artifact": "student int8",
        "speedup": 9.97,
        "size_fraction": 0.115,
        "accuracy_delta": -0.004,
        "met": True,
    }
    markdown = _target_markdown({**check, "candidates": [check]}, _settings())
    assert "No target given" in markdown and "| student int8 | 9.97x | 0.115 | -0.40 | - |" in markdown


def test_the_targets_given_are_checked_in_their_units() -> None:
    settings = _settings(target_speedup=10, target_size_fraction=0.125, target_accuracy_drop=0.5)
    check = target_check(ROW, settings)
    assert (check["speedup_met"], check["size_met"], check["accuracy_met"], check["met"]) == (False, True, True, False)
    assert target_check(ROW, _settings(target_accuracy_drop=0.3))["accuracy_met"] is False
    markdown = _target_markdown({**check, "candidates": [check]}, settings)
    assert "speed-up at batch 1 (p50) >= 10x: 9.97x, **not met**" in markdown
    assert "accuracy within 0.5 points: -0.40 points, met" in markdown


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("target_speedup", 0.0, r"target_speedup must be > 0 .*got 0.0"),
        ("target_size_fraction", 1.5, r"target_size_fraction must be in \(0, 1\] .*got 1.5"),
        ("target_accuracy_drop", -1.0, r"target_accuracy_drop must be >= 0 points, got -1.0"),
    ],
)
def test_an_impossible_target_is_refused_before_any_fit(option: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(**{option: value})


def test_the_options_reach_the_settings() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_common_options(parser)
    args = parser.parse_args(["--target-speedup", "8", "--target-accuracy-drop", "1.5"])
    settings = common_settings(args)
    assert (settings["target_speedup"], settings["target_size_fraction"], settings["target_accuracy_drop"]) == (
        8.0,
        None,
        1.5,
    )
