"""Bad settings fail when the config is built, with messages that name the argument and what is allowed."""

import pytest

from lightning_distill.core.quantization import BitsAndBytesConfig, DynamicQuantConfig, QATConfig, StaticQuantConfig
from lightning_distill.core.quantization.config import config_from_dict, config_to_dict


@pytest.mark.parametrize("cls", [DynamicQuantConfig, StaticQuantConfig, QATConfig])
def test_unknown_backend_is_refused(cls):
    with pytest.raises(
        ValueError, match=r"backend must be one of 'fbgemm', 'x86', 'qnnpack', 'onednn'; got 'tensorrt'"
    ):
        cls(backend="tensorrt")


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="calibration_batches must be an int >= 1; got 0"):
        StaticQuantConfig(calibration_batches=0)
    with pytest.raises(ValueError, match="step must be one of 'prepare', 'convert'; got 'train'"):
        QATConfig(step="train")
    with pytest.raises(ValueError, match="freeze_observers_epoch must be None or an int >= 0; got -1"):
        QATConfig(freeze_observers_epoch=-1)
    with pytest.raises(ValueError, match="weights must be one of 'int8', 'nf4', 'fp4'; got 'int2'"):
        BitsAndBytesConfig(weights="int2")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"):
        BitsAndBytesConfig(device="gpu")
    with pytest.raises(ValueError, match="skip_modules must be a list of module-name patterns"):
        DynamicQuantConfig(skip_modules="classifier")
    with pytest.raises(ValueError, match="dtype must be one of 'qint8', 'float16'"):
        DynamicQuantConfig(dtype="int4")


def test_configs_are_frozen_and_round_trip_as_plain_data():
    config = StaticQuantConfig(backend="qnnpack", calibration_batches=3, skip_modules=["classifier"])
    assert config.skip_modules == ("classifier",)
    with pytest.raises(AttributeError):
        config.backend = "x86"
    assert config_from_dict(config_to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown quantization config type 'Int4Config'"):
        config_from_dict({"type": "Int4Config"})
