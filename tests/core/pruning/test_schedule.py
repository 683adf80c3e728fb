import pytest

from lightning_distill.core.pruning import PruningSchedule


def test_linear_five_steps_to_eighty_percent() -> None:
    schedule = PruningSchedule(0.8, start=0, end=4, shape="linear")
    assert schedule.points() == [0, 1, 2, 3, 4]
    assert [round(schedule.sparsity_at(t), 6) for t in range(6)] == [0.16, 0.32, 0.48, 0.64, 0.8, 0.8]


def test_cubic_follows_zhu_and_gupta_and_hits_target_at_end() -> None:
    schedule = PruningSchedule(0.9, start=10, end=100, unit="step", frequency=30, shape="cubic", initial_sparsity=0.1)
    assert schedule.points() == [10, 40, 70, 100]
    assert schedule.sparsity_at(9) == 0.0
    # t0 = start - frequency = -20; p = (t - t0) / (end - t0)
    for t, p in [(10, 30 / 120), (39, 30 / 120), (40, 60 / 120), (70, 90 / 120)]:
        assert schedule.sparsity_at(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - p) ** 3)
    assert schedule.sparsity_at(100) == 0.9
    assert schedule.sparsity_at(10_000) == 0.9
    values = [schedule.sparsity_at(t) for t in schedule.points()]
    assert values == sorted(values) and values[0] < 0.9


def test_end_is_always_a_point_and_point_at() -> None:
    schedule = PruningSchedule(0.5, start=2, end=9, frequency=3)
    assert schedule.points() == [2, 5, 8, 9]
    assert [schedule.point_at(t) for t in (0, 2, 4, 5, 8, 9, 20)] == [None, 2, 2, 5, 8, 9, 9]


def test_one_shot_and_constant() -> None:
    assert PruningSchedule(0.3, start=3).points() == [3]
    assert PruningSchedule(0.3, start=3).sparsity_at(3) == 0.3
    constant = PruningSchedule(0.3, start=0, end=4, shape="constant")
    assert [constant.sparsity_at(t) for t in range(5)] == [0.3] * 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"final_sparsity": 1.0}, r"final_sparsity must be in \[0, 1\), got 1.0"),
        ({"final_sparsity": -0.1}, r"final_sparsity must be in \[0, 1\)"),
        ({"final_sparsity": 0.5, "initial_sparsity": 0.6}, r"initial_sparsity must be in \[0, final_sparsity=0.5\]"),
        ({"final_sparsity": 0.5, "start": 4, "end": 2}, r"end must be >= start=4, got end=2"),
        ({"final_sparsity": 0.5, "start": -1}, r"start must be >= 0"),
        ({"final_sparsity": 0.5, "frequency": 0}, r"frequency must be >= 1"),
        ({"final_sparsity": 0.5, "shape": "exp"}, r"schedule must be one of"),
        ({"final_sparsity": 0.5, "unit": "batch"}, r"unit must be one of"),
    ],
)
def test_bad_schedules(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PruningSchedule(**kwargs)
