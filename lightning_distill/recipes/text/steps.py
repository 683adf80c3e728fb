"""The steps of a text-classification compression recipe, shared by ``recipes/clinc.py`` and
``recipes/clinc_offline.py``; :func:`build` adds them to a :class:`~lightning_distill.recipes.engine.Recipe`.

Every training step loads the task's config (``<configs>/teacher.yaml`` or ``<configs>/distill.yaml``) as a dict,
changes it (paths, data, student, dropout, epochs, output folder) and runs it with the LightningCLI (:mod:`.fit`):

1. ``teacher``: a fine-tuned teacher as a ``save_pretrained`` folder: a given folder as is; a Lightning checkpoint of
   ``teacher.yaml``, or a Hub name, saved to ``teacher/model``; or, with no teacher given, ``fit`` of ``teacher.yaml``.
2. ``distill``: ``fit`` of ``distill.yaml`` (teacher frozen, its logits cached) -> ``distill/student`` (best val/acc).
3. ``prune`` (optional): the distilled student loses a fraction of its attention heads and FFN neurons gradually
   during a ``fit`` of ``distill.yaml`` (``StructuredPruning``: first-order Taylor importance, 12 cubic steps over the
   first half of the epochs, distillation throughout) -> ``prune/student`` (``save_pruned`` format).
4. ``offset`` (with an ``offset_class``): each student's logit of that reject class (CLINC150: ``oos``) is offset
   so that it predicts the class as often as the teacher on the validation texts (no labels used) ->
   ``offset/student`` and ``offset/student_pruned``; the later steps use these students.
5. ``quantize``: PyTorch dynamic int8 of the final student (the pruned one where there is one).
6. ``export``: the final student (last layer for ``[CLS]`` only, where exact) as an export folder that optimum and
   ``load_exported`` load (``export/student``):
   ONNX fp32, as optimized by ONNX Runtime, as ONNX Runtime dynamic int8 (the embedding tables included: ONNX Runtime
   quantizes their ``Gather``) and as int8 with 4-bit embedding tables, with ``config.json``, the tokenizer and a
   model card; with pruning, the unpruned student as int8 with 4-bit embeddings too.
7. ``benchmark``: every artifact reloaded from disk, measured on raw test texts (tokenization in every latency).
8. ``report``: ``report.{json,md,png}`` with ratios against the fp32 teacher, the options and the ``--target-*`` given,
   checked for each ONNX candidate; the final artifact is the most compressed candidate that meets them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from lightning_distill.recipes.engine import Recipe
from lightning_distill.recipes.text.artifacts import (
    FirstExamples,
    embedding_is_int8,
    forward_inputs,
    has_tokenizer,
    load_classifier,
    load_student,
    save_classifier,
    weights_file,
)
from lightning_distill.recipes.text.fit import (
    build_fit,
    gradual_pruning,
    init_args,
    load_config,
    run_fit,
    train_batches,
    with_trainer,
)
from lightning_distill.recipes.text.report import EMB4, INT8, ONNX_ARTIFACTS, PRE_OFFSET, REFERENCE, write_text_report
from lightning_distill.recipes.text.settings import TextRecipeSettings, step_options

if TYPE_CHECKING:
    from lightning_distill.lightning.data import TextClassificationDataModule

__all__ = ["TextRecipeSteps", "build"]


def build(recipe: Recipe, settings: TextRecipeSettings) -> Recipe:
    """Add the steps of the module docstring to ``recipe``."""
    return TextRecipeSteps(recipe, settings).add_steps()


class TextRecipeSteps:
    """The steps of a text recipe, each a method returning the JSON-able result its ``done.json`` records.

    Args:
        recipe: The recipe the steps are added to (its folder holds every step's artifacts).
        settings: What the steps train and measure.
    """

    def __init__(self, recipe: Recipe, settings: TextRecipeSettings) -> None:
        self.recipe, self.settings = recipe, settings
        self.configs = Path(settings.configs)
        self.final = "student pruned" if settings.prune else "student"
        self.rows_file = recipe.step_dir("benchmark") / "rows.json"

    def add_steps(self) -> Recipe:
        """Add the steps, with the configs and settings each depends on, to the recipe and return it."""
        settings, distill_yaml = self.settings, [self.configs / "distill.yaml"]
        fits_teacher = settings.teacher is None or Path(settings.teacher).is_file()
        offsets = settings.offset_class is not None
        # The steps after the students' come from the offset step or, without it, from distill and prune: named,
        # so that turning the offset on or off redoes them (they read other steps than when they ran).
        students = ["offset"] if offsets else ["distill", *(["prune"] if settings.prune else [])]
        steps: list[tuple[str, Callable[[], dict[str, Any]], list[Path], list[str]]] = [
            ("teacher", self.teacher, [self.configs / "teacher.yaml"] if fits_teacher else [], []),
            ("distill", self.distill, distill_yaml, []),
            *([("prune", self.prune, distill_yaml, [])] if settings.prune else []),
            *([("offset", self.offset, [], [])] if offsets else []),
            ("quantize", self.quantize, [], students),
            ("export", self.export, distill_yaml, students),
            ("benchmark", self.benchmark, distill_yaml, students),
            ("report", self.report, [], []),
        ]
        for name, method, configs, reads in steps:
            self.recipe.step(name, reads=reads, configs=configs, options=step_options(settings, name))(method)
        return self.recipe

    # --- what the steps share ----------------------------------------------------------------------------------------

    def teacher_folder(self) -> str:
        """The fine-tuned teacher's ``save_pretrained`` folder (the teacher step's result)."""
        return self.recipe.result("teacher")["model"]

    def prune_teacher_folder(self, distilled: str) -> str:
        """The folder whose soft targets the prune step learns: the teacher's, or the ``distilled`` student's."""
        return distilled if self.settings.prune_teacher == "student" else self.teacher_folder()

    def teacher_tokenizer(self, teacher: str) -> str:
        """The tokenizer of the fine-tuned ``teacher`` folder: its own, else ``teacher_tokenizer`` or ``tokenizer``."""
        if has_tokenizer(teacher):
            return teacher
        return self.settings.teacher_tokenizer or self.settings.tokenizer

    def data_module(self, tokenizer: str) -> TextClassificationDataModule:
        """``distill.yaml``'s data module with the recipe's data, encoding with ``tokenizer`` alone."""
        from lightning_distill.lightning.data import TextClassificationDataModule

        config = load_config(self.configs / "distill.yaml")
        kwargs = {**init_args(config, "data"), **self.settings.data, "tokenizer": tokenizer, "teacher_tokenizer": None}
        return TextClassificationDataModule(**kwargs)

    def student_folder(self, pruned: bool = False) -> str:
        """The distilled (or pruned) student's folder that the steps after the offset step use: the offset
        one where that step runs."""
        if self.settings.offset_class is not None:
            return self.recipe.result("offset")["student pruned" if pruned else "student"]["folder"]
        return self.recipe.result("prune" if pruned else "distill")["student"]

    def final_student(self) -> tuple[nn.Module, str]:
        """The final student (the pruned one where there is one; offset), loaded from disk, and its folder."""
        folder = self.student_folder(pruned=self.settings.prune)
        return load_student(folder, self.settings.prune), folder

    def check_offset_class(self) -> None:
        """Before a fit: the reject class to offset is a label of the data."""
        if self.settings.offset_class is not None:
            from lightning_distill.recipes.text.offset import class_index

            class_index(self.data_module(self.settings.tokenizer), self.settings.offset_class)

    # --- the configs of the fits ------------------------------------------------------------------------------------

    def teacher_config(self) -> dict[str, Any]:
        """``teacher.yaml`` fine-tuning ``teacher_base`` on the recipe's data, with ``teacher_dropout``."""
        settings = self.settings
        config = load_config(self.configs / "teacher.yaml")
        init_args(config, "model", "model")["checkpoint"] = settings.teacher_base
        data = init_args(config, "data")
        data.update({**settings.data, "tokenizer": settings.teacher_tokenizer or settings.tokenizer})
        if settings.teacher_dropout is not None:
            init_args(config, "model")["dropout"] = settings.teacher_dropout
        if settings.seed is not None:
            config["seed_everything"] = settings.seed
        return config

    def distill_config(self, teacher: str, student: dict[str, Any] | None = None) -> dict[str, Any]:
        """``distill.yaml`` distilling the fine-tuned ``teacher`` folder into ``student`` (a ``class_path`` dict).

        The teacher's weights are the folder's (the config's ``teacher_checkpoint`` is dropped), its logits are
        cached under the recipe's folder, the data is the recipe's with both tokenizers, and the student gets
        ``dropout``. With no ``student``, the config's is built from ``student_base`` (None: ``teacher``) with
        ``student_layers``, and its ``teacher_weights`` (a teacher fit's checkpoint) dropped: the folder replaces it.
        """
        settings = self.settings
        config = load_config(self.configs / "distill.yaml")
        module = init_args(config, "model")
        init_args(config, "model", "teacher")["checkpoint"] = teacher
        module.update(teacher_checkpoint=None, teacher_cache_dir=str(self.recipe.folder / "teacher_logits"))
        if settings.dropout is not None:
            module["dropout"] = settings.dropout
        if settings.seed is not None:
            config["seed_everything"] = settings.seed
        tokenizers = {"tokenizer": settings.tokenizer, "teacher_tokenizer": self.teacher_tokenizer(teacher)}
        init_args(config, "data").update({**settings.data, **tokenizers})
        if student is not None:
            module["student"] = student
            return config
        student_args = init_args(config, "model", "student")
        student_args["checkpoint"] = settings.student_base or teacher
        if "teacher_weights" in student_args:
            student_args["teacher_weights"] = None
        if settings.student_layers is not None:
            student_args["layers"] = list(settings.student_layers)
        return config

    # --- the steps ---------------------------------------------------------------------------------------------------

    def teacher(self) -> dict[str, Any]:
        """A fine-tuned teacher folder: the given one, or one saved from a fit, a Lightning checkpoint or the Hub."""
        source, step_dir = self.settings.teacher, self.recipe.step_dir("teacher")
        if source is not None and Path(source).is_dir():
            return {"model": source, "source": "fine-tuned folder, used as is"}
        if source is None:
            self.check_offset_class()
            config = with_trainer(self.teacher_config(), self.settings, step_dir, self.settings.teacher_epochs)
            cli, model, best = run_fit(config, "teacher.yaml")
            tokenizer, result = cli.datamodule.tokenizer, {"source": "fit", **best}
        elif Path(source).is_file():
            from lightning_distill.lightning.modules.deployable import load_deployable

            cli = build_fit(self.teacher_config())
            model = load_deployable(cli.model, source, what=f"--teacher {source}")
            tokenizer, result = cli.datamodule.tokenizer, {"source": f"Lightning checkpoint {source}"}
        else:
            from transformers import AutoTokenizer

            from lightning_distill.core.models import TransformerClassifier, from_pretrained

            model, tokenizer = TransformerClassifier(source), from_pretrained(AutoTokenizer, source, "--teacher")
            result = {"source": f"Hub model {source}, saved locally"}
        save_classifier(model, tokenizer, step_dir / "model")
        return {"model": str(step_dir / "model"), **result}

    def distill(self) -> dict[str, Any]:
        """Distil the teacher into the student; keep the best epoch's student as a ``save_pretrained`` folder."""
        folder = self.recipe.step_dir("distill")
        self.check_offset_class()
        config = with_trainer(self.distill_config(self.teacher_folder()), self.settings, folder, self.settings.epochs)
        cli, student, best = run_fit(config, "distill.yaml")
        save_classifier(student, cli.datamodule.tokenizer, folder / "student")
        return {"student": str(folder / "student"), **best}

    def prune(self) -> dict[str, Any]:
        """Prune the distilled student gradually while distilling; keep the last (fully pruned) student."""
        from lightning_distill.core.pruning import pruned_shapes

        settings, folder = self.settings, self.recipe.step_dir("prune")
        distilled = self.recipe.result("distill")["student"]
        student = {
            "class_path": "lightning_distill.core.models.TransformerClassifier",
            "init_args": {"checkpoint": distilled},
        }
        pruning = gradual_pruning(settings, train_batches(self.data_module(distilled)))
        config = self.distill_config(self.prune_teacher_folder(distilled), student)
        config = with_trainer(config, settings, folder, settings.prune_epochs, [pruning])
        cli, pruned, best = run_fit(config, "distill.yaml (prune)", keep="last")
        save_classifier(pruned.model, cli.datamodule.tokenizer, folder / "student", pruned=True)
        return {"student": str(folder / "student"), "parameters": pruned_shapes(pruned.model)["parameters"], **best}

    def offset(self) -> dict[str, Any]:
        """Offset the reject class's logit of each student to predict it as often as the teacher on the validation
        texts; save the offset students (``offset/student``, ``offset/student_pruned``)."""
        from lightning_distill.recipes.text.offset import offset_student, save_student, teacher_reference

        label, folder, teacher = self.settings.offset_class, self.recipe.step_dir("offset"), self.teacher_folder()
        texts, labels, teacher_logits, result = teacher_reference(
            load_classifier(teacher), self.data_module(self.teacher_tokenizer(teacher)), label
        )
        index, wanted = result["index"], result["teacher_predicted"]
        students = [("student", self.recipe.result("distill")["student"], False)]
        if self.settings.prune:
            students.append(("student pruned", self.recipe.result("prune")["student"], True))
        for name, source, pruned in students:
            data = self.data_module(source)
            model, record = offset_student(load_student(source, pruned), data, texts, labels, teacher_logits, index)
            out = folder / name.replace(" ", "_")
            save_student(model, source, out, pruned=pruned)
            result[name] = {"folder": str(out), "source": source, **record}
            before, after = record["predicted_before"], record["predicted_after"]
            print(
                f"offset: {name}: {label!r} logit {record['offset']:+.3f}, predicted for {before} -> {after} of "
                f"{len(texts)} validation texts (teacher: {wanted})"
            )
        return result

    def quantize(self) -> dict[str, Any]:
        """PyTorch dynamic int8 of the final student."""
        from lightning_distill.core.quantization import DynamicQuantConfig, quantize, save_quantized

        model, _ = self.final_student()
        path = self.recipe.step_dir("quantize") / "student_dynamic_int8.pt"
        return {"dynamic_int8": str(save_quantized(quantize(model, DynamicQuantConfig()), path))}

    def export(self) -> dict[str, Any]:
        """The final student as an export folder in optimum's layout (``export/student``: ONNX fp32, ORT-optimized,
        ORT int8 and int8 with 4-bit embeddings, ``config.json``, tokenizer, model card), and the unpruned student
        as int8 with 4-bit embeddings too, with pruning."""
        from lightning_distill.core import export as ex

        out = self.recipe.step_dir("export")
        model, folder = self.final_student()
        data = self.data_module(folder)
        # ORT's optimized graph has fused contrib ops its quantizer cannot type: the int8 graphs are quantized from
        # the exported one (the session applies the same fusions when it loads them).
        written = ex.export_text_classifier(
            model,
            data.tokenizer,
            out / "student",
            data.benchmark_data("test")[0][:8],
            id2label=data.id2label,
            max_length=data.max_length,
            title=f"{self.settings.title}: {self.final}",
            # The benchmark step measures these graphs into the recipe's report; writing its figures into this folder
            # would change the export step's outputs and make the recipe redo it.
            provenance={"student": str(folder), "measured in": str(self.recipe.folder / "report.md")},
        )
        result = {
            "folder": str(out / "student"),
            "onnx": str(written["fp32"]),
            "onnx_optimized": str(written["optimized"]),
            "onnx_int8": str(written["int8"]),
            "onnx_int8_emb4": str(written["int8_emb4"]),
            "embedding_int8": embedding_is_int8(written["int8"]),
            "last_layer": ex.read_export_info(out / "student")["last_layer"],
        }
        if self.settings.prune:  # the unpruned student too, as the most accurate compressed candidate
            unpruned = self.student_folder()
            model = load_classifier(unpruned)
            example = forward_inputs(model, self.data_module(unpruned).example_input(8))
            model, result["unpruned_last_layer"] = ex.cut_for_export(model, example)
            float_path = ex.export_onnx(model, ex.OnnxExportConfig(), example, out / "unpruned_student.onnx")
            int8_emb4 = ex.OrtQuantConfig(embedding_bits=4)
            path = ex.quantize_onnx(float_path, out / "unpruned_student_int8_emb4.onnx", int8_emb4)
            result["unpruned_onnx_int8_emb4"] = str(path)
            float_path.unlink()
        return result

    def benchmark(self) -> dict[str, Any]:
        """Measure every artifact, reloaded from disk, one at a time, into ``benchmark/rows.json``."""
        from lightning_distill.core.benchmark import machine_info, write_rows

        self.rows_file.unlink(missing_ok=True)
        measures = self._measures()
        for index, (name, measure) in enumerate(measures, start=1):
            print(f"benchmark {index}/{len(measures)}: {name} ...", end=" ", flush=True)
            row = measure(name)
            write_rows([row], self.rows_file)
            print(f"accuracy {row.accuracy:.4f}, {row.size_mb:.2f} MB, p50 {row.latency_ms_p50:.2f} ms", flush=True)
        # Most compressed first: the report's final artifact is the first of these within the accuracy budget.
        candidates = [f"{self.final} {EMB4}", f"{self.final} {INT8}"]
        if self.settings.prune:
            candidates.append(f"student {EMB4}")
        # Latencies, and int8 speed-ups most of all, belong to the CPU they were measured on.
        machine = {**machine_info(), "bench_threads": self.settings.bench_threads}  # rows: at bench_threads
        return {"rows": str(self.rows_file), "candidates": candidates, "machine": machine}

    def _measures(self) -> list[tuple[str, Callable[[str], Any]]]:
        """``(row name, measure)`` of every artifact; each is loaded when measured, so one model is in memory."""
        from lightning_distill.core.benchmark import benchmark_onnx, benchmark_quantized

        settings, final = self.settings, self.final
        options = {"num_threads": settings.bench_threads, "iterations": settings.bench_iterations}
        student_folder, teacher_folder = self.student_folder(), self.teacher_folder()
        teacher_data = FirstExamples(self.data_module(self.teacher_tokenizer(teacher_folder)), settings.test_limit)
        data = FirstExamples(self.data_module(student_folder), settings.test_limit)
        float_model, folder = self.final_student()
        quantized, exported = self.recipe.result("quantize"), self.recipe.result("export")
        measures: list[tuple[str, Callable[[str], Any]]] = [
            (REFERENCE, lambda name: self._module_row(None, teacher_data, name, teacher_folder)),
            ("student fp32", lambda name: self._module_row(None, data, name, student_folder)),
        ]
        if settings.prune:
            measures.append((f"{final} fp32", lambda name: self._module_row(float_model, data, name, folder)))
        if settings.offset_class is not None:  # what the offset step bought, on the test texts
            source = self.recipe.result("offset")[final]["source"]
            measures.append(
                (
                    f"{final} fp32 {PRE_OFFSET}",
                    lambda name: self._module_row(load_student(source, settings.prune), data, name, source),
                )
            )
        measures.append(
            (
                f"{final} int8 (PyTorch dynamic)",
                lambda name: benchmark_quantized(quantized["dynamic_int8"], float_model, data, name=name, **options),
            )
        )
        onnx_rows = [(f"{final} {label}", key) for key, label in ONNX_ARTIFACTS]
        if settings.prune:
            onnx_rows.append((f"student {EMB4}", "unpruned_onnx_int8_emb4"))
        for row_name, key in onnx_rows:
            measures.append((row_name, lambda name, key=key: benchmark_onnx(exported[key], data, name=name, **options)))
        return measures

    def _module_row(self, model: nn.Module | None, data: Any, name: str, folder: str | Path) -> Any:
        """The benchmark row of ``model`` (None: the classifier saved in ``folder``), sized by ``folder``'s weights."""
        from lightning_distill.core.benchmark import benchmark_module

        return benchmark_module(
            load_classifier(folder) if model is None else model,
            data,
            name=name,
            artifact_path=weights_file(folder),
            num_threads=self.settings.bench_threads,
            iterations=self.settings.bench_iterations,
        )

    def report(self) -> dict[str, Any]:
        """``report.{json,md,png}`` and ``report_settings.json`` under the recipe's folder."""
        benchmark = self.recipe.result("benchmark")
        return write_text_report(
            self.recipe, self.settings, self.rows_file, benchmark["candidates"], benchmark.get("machine")
        )
