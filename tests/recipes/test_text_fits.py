"""The text recipe's fits get their settings as values: each step changes a config dict that the LightningCLI parses
(no strings on a command line), and the built objects hold exactly those values, data links applied."""

from pathlib import Path

import pytest
from conftest import ROOT
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer
from torch import nn

from lightning_distill.recipes.engine import Recipe
from lightning_distill.recipes.text import TextRecipeSettings, TextRecipeSteps
from lightning_distill.recipes.text.fit import build_fit, init_args, load_config, with_trainer


@pytest.fixture
def settings(tmp_path: Path) -> TextRecipeSettings:
    """The offline CLINC configs pointed at a tiny BERT, its tokenizer and 3-intent data, with dropouts and limits."""
    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    base = write_bert(tmp_path / "bert", layers=4, hidden=32, heads=4)
    files = write_data(tmp_path / "data", sizes=(24, 12, 12))
    return TextRecipeSettings(
        configs=str(ROOT / "configs" / "clinc" / "offline"),
        title="t",
        data={"data_files": files},
        tokenizer=tokenizer,
        teacher=None,
        teacher_base=base,
        student_base=None,
        student_layers=[0, 2],
        teacher_epochs=3,
        epochs=2,
        limit_train_batches=0.5,
        limit_val_batches=2,
        teacher_dropout=0.25,
        dropout=0.3,
    )


def _dropouts(model: nn.Module) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, nn.Dropout)}


def test_the_teacher_fit_gets_the_settings_as_values(settings: TextRecipeSettings, tmp_path: Path) -> None:
    steps = TextRecipeSteps(Recipe("text", root=tmp_path / "runs"), settings)
    folder = tmp_path / "runs" / "text" / "teacher"
    cli = build_fit(with_trainer(steps.teacher_config(), settings, folder, settings.teacher_epochs))
    module, trainer = cli.model, cli.trainer
    assert type(module.hparams.dropout) is float and module.hparams.dropout == 0.25
    assert _dropouts(module.model) == {0.25}
    assert module.model.model.config.num_hidden_layers == 4  # teacher_base, not the config's MiniLM
    assert list(module.model.model.config.id2label.values()) == INTENTS  # linked from the data module
    assert cli.datamodule.tokenizer.name_or_path == settings.tokenizer
    assert trainer.max_epochs == 3 and trainer.limit_train_batches == 0.5 and trainer.limit_val_batches == 2
    assert type(trainer.limit_val_batches) is int
    assert Path(trainer.checkpoint_callback.dirpath) == folder / "checkpoints"
    assert Path(trainer.logger.save_dir) == folder


def test_the_distill_fit_gets_none_and_floats_not_strings(settings: TextRecipeSettings, tmp_path: Path) -> None:
    teacher = write_bert(tmp_path / "teacher", layers=4, hidden=32, heads=4, labels=INTENTS, seed=1)
    write_tokenizer(tmp_path / "teacher")
    recipe = Recipe("text", root=tmp_path / "runs")
    config = TextRecipeSteps(recipe, settings).distill_config(teacher)
    student_args = init_args(config, "model", "student")
    assert student_args["teacher_weights"] is None and init_args(config, "model")["teacher_checkpoint"] is None
    cli = build_fit(with_trainer(config, settings, tmp_path / "fit", settings.epochs))
    module = cli.model
    # the config's teacher_checkpoint and teacher_weights (a teacher fit's checkpoint under runs/) are None, so the
    # teacher folder's weights are used: had either arrived as a string, building the module would have failed
    assert module.hparams.teacher_checkpoint is None
    assert cli.config.model.init_args.student.init_args.teacher_weights is None
    assert type(module.hparams.dropout) is float and module.hparams.dropout == 0.3
    assert _dropouts(module.student) == {0.3} and module.teacher.training is False
    # the student is cut from the fine-tuned teacher (layers 0 and 2, its trained head), not from the config's MiniLM
    teacher_model, student_model = module.teacher.model, module.student.model
    assert student_model.config.num_hidden_layers == 2
    assert (student_model.classifier.weight == teacher_model.classifier.weight).all()
    assert module.num_classes == len(INTENTS) and list(student_model.config.id2label.values()) == INTENTS
    assert module.teacher_cache_dir == str(recipe.folder / "teacher_logits")
    assert cli.datamodule.teacher_tokenizer_name == teacher  # its folder holds its tokenizer
    assert cli.trainer.max_epochs == 2


def test_a_config_without_the_class_the_recipe_sets_is_named(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "clinc" / "offline" / "teacher.yaml")
    with pytest.raises(ValueError, match=r"no class_path/init_args at model\.init_args\.student"):
        init_args(config, "model", "student")


@pytest.mark.parametrize("name", ["dropout", "teacher_dropout"])
def test_a_dropout_out_of_range_is_refused_before_any_fit(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be None .* or in \[0, 1\), got 1.5"):
        TextRecipeSettings("configs", "t", {}, "tok", "teacher", None, None, **{name: 1.5})


def test_the_seed_reaches_every_fit_and_an_impossible_one_is_refused(
    settings: TextRecipeSettings, tmp_path: Path
) -> None:
    from dataclasses import replace

    steps = TextRecipeSteps(Recipe("text", root=tmp_path / "runs"), replace(settings, seed=7))
    assert steps.teacher_config()["seed_everything"] == 7
    assert steps.distill_config(settings.teacher_base)["seed_everything"] == 7
    unseeded = TextRecipeSteps(Recipe("text", root=tmp_path / "runs"), settings)
    assert unseeded.teacher_config()["seed_everything"] == 0  # the config's
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\), got -1"):
        replace(settings, seed=-1)


def test_the_prune_step_can_learn_from_the_unpruned_student(settings: TextRecipeSettings, tmp_path: Path) -> None:
    from dataclasses import replace

    distilled = write_bert(tmp_path / "distilled", layers=2, hidden=32, heads=4, labels=INTENTS, seed=2)
    write_tokenizer(tmp_path / "distilled")
    steps = TextRecipeSteps(Recipe("text", root=tmp_path / "runs"), replace(settings, prune_teacher="student"))
    student = {
        "class_path": "lightning_distill.core.models.TransformerClassifier",
        "init_args": {"checkpoint": distilled},
    }
    config = steps.distill_config(steps.prune_teacher_folder(distilled), student)
    module = build_fit(with_trainer(config, settings, tmp_path / "fit", 1)).model
    teacher_model, student_model = module.teacher.model, module.student.model
    assert teacher_model.config.num_hidden_layers == 2  # the distilled student, not a 4-layer teacher
    assert (teacher_model.classifier.weight == student_model.classifier.weight).all()
    with pytest.raises(ValueError, match="prune_teacher must be 'teacher' or 'student', got 'both'"):
        replace(settings, prune_teacher="both")
