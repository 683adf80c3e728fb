"""The reject-class offset's options: ``--offset-class`` / ``--no-offset``, and their 0.1 names, which still work."""

import pytest

from lightning_distill.recipes.engine import recipe_arguments
from lightning_distill.recipes.text import add_common_options


def _parser():
    parser = recipe_arguments("text recipe")
    add_common_options(parser)
    parser.set_defaults(offset_class="oos")
    return parser


def test_offset_options() -> None:
    assert _parser().parse_args([]).offset_class == "oos"
    assert _parser().parse_args(["--offset-class", "weather"]).offset_class == "weather"
    assert _parser().parse_args(["--no-offset"]).offset_class is None


def test_the_old_names_of_the_offset_options_warn_and_work() -> None:
    with pytest.warns(FutureWarning, match=r"--calibrate-class is now --offset-class; .* removed in 0\.3"):
        assert _parser().parse_args(["--calibrate-class", "weather"]).offset_class == "weather"
    with pytest.warns(FutureWarning, match=r"--no-calibrate is now --no-offset"):
        assert _parser().parse_args(["--no-calibrate"]).offset_class is None
    assert "calibrate" not in _parser().format_help()
