"""Feature distillation between named modules of any two models (FitNets hints, Romero et al., 2015).

The student imitates the output of one of the teacher's modules with the output of one of its own, both named as in
``named_modules()`` (``features.2``, ``layer3``, ``encoder.layer.1``). The distillation module captures both outputs
with forward hooks during its training step; this file holds the plain-PyTorch part: the distance, the learned
projection of the student's feature to the teacher's width, and the resizing of feature maps of different sizes.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_distill.core.losses._module_names import find_module, output_width


def channel_dim(feature: Tensor) -> int:
    """The dimension holding the channels of a feature: 1 for a 4-D map ``(batch, channels, height, width)``, the
    last one otherwise (``(batch, width)`` or token sequences ``(batch, length, width)``)."""
    return 1 if feature.dim() == 4 else feature.dim() - 1


def feature_loss(student_feature: Tensor, teacher_feature: Tensor, kind: str = "mse") -> Tensor:
    """Distance between a student feature and a teacher feature of the same shape.

    ``"mse"`` is the FitNets hint loss (Romero et al., 2015): ``mean((s - t)^2)`` over every element. ``"cosine"`` is
    ``mean(1 - cos(s_p, t_p))`` over positions ``p``, where ``s_p`` and ``t_p`` are the channel vectors at one
    position (one pixel of a feature map, one token of a sequence, one example of a ``(batch, width)`` feature): it
    compares directions and ignores scale, as DistilBERT's cosine loss does (Sanh et al., 2019).

    Args:
        student_feature: The student's feature, already projected and resized to the teacher's shape.
        teacher_feature: The teacher's feature; no gradient flows into it.
        kind: ``"mse"`` or ``"cosine"``.
    """
    if kind not in ("mse", "cosine"):
        raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")
    if student_feature.shape != teacher_feature.shape:
        raise ValueError(
            f"student feature has shape {tuple(student_feature.shape)} but the teacher's "
            f"{tuple(teacher_feature.shape)}; they must match after projection and resizing"
        )
    student, teacher = student_feature.float(), teacher_feature.detach().float()
    if kind == "mse":
        return (student - teacher).pow(2).mean()
    return (1.0 - F.cosine_similarity(student, teacher, dim=channel_dim(student))).mean()


def pool_to_common_size(student_feature: Tensor, teacher_feature: Tensor) -> tuple[Tensor, Tensor]:
    """Two 4-D feature maps average-pooled to their common (smallest) height and width.

    The larger map is averaged down (adaptive average pooling) rather than the smaller one interpolated up: pooling
    invents no detail, adds no parameters and makes the loss cheaper, and each pooled value summarizes the region
    that the smaller map's value stands for. Other features are returned as they are.
    """
    if student_feature.dim() != 4 or teacher_feature.dim() != 4:
        return student_feature, teacher_feature
    size = tuple(min(s, t) for s, t in zip(student_feature.shape[2:], teacher_feature.shape[2:], strict=True))
    if tuple(student_feature.shape[2:]) != size:
        student_feature = F.adaptive_avg_pool2d(student_feature, size)
    if tuple(teacher_feature.shape[2:]) != size:
        teacher_feature = F.adaptive_avg_pool2d(teacher_feature, size)
    return student_feature, teacher_feature


class FeatureLoss(nn.Module):
    """Distils the output of the teacher's module ``teacher_layer`` into the output of the student's ``student_layer``.

    Where the widths (channels) differ, the student's feature goes through a learned projection to the teacher's
    width (FitNets' regressor): a 1x1 ``Conv2d`` when the student layer yields feature maps (its width comes from a
    ``Conv2d``/``BatchNorm2d``), else a ``Linear``; either acts on the channel dimension (a ``Linear`` on a 4-D map is
    the same map as a 1x1 convolution). The projection is created by :meth:`bind` (which the distillation module
    calls at construction, so it is in the optimizer and in checkpoints) and is trained with the student. Feature maps
    of different heights or widths are average-pooled to the smaller size (see :func:`pool_to_common_size`).

    Widths are read from the named module (``Conv2d.out_channels``, ``Linear.out_features``,
    ``BatchNorm.num_features``, ``LayerNorm``), else from the last such layer inside it, else, for an activation,
    dropout or pooling layer of an ``nn.Sequential``, from the last such layer before it. Give ``student_width`` /
    ``teacher_width`` where none applies (or to override it). A module that returns a tuple (Hugging Face layers)
    is read at its first tensor.

    Args:
        student_layer: Dotted name of the student's module, as in ``student.named_modules()`` (e.g. ``features.2``).
        teacher_layer: Dotted name of the teacher's module (e.g. ``layer3``).
        loss: ``"mse"`` (FitNets) or ``"cosine"`` (one minus the cosine of the channel vectors); see
            :func:`feature_loss`.
        weight: Weight of this loss in the total loss.
        student_width: Channels of the student layer's output, where they cannot be read from the module.
        teacher_width: Channels of the teacher layer's output, where they cannot be read from the module.
    """

    def __init__(
        self,
        student_layer: str,
        teacher_layer: str,
        loss: Literal["mse", "cosine"] = "mse",
        weight: float = 1.0,
        student_width: int | None = None,
        teacher_width: int | None = None,
    ) -> None:
        super().__init__()
        for argument, value in (("student_layer", student_layer), ("teacher_layer", teacher_layer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{argument} must name a module (e.g. 'features.2'), got {value!r}")
        if loss not in ("mse", "cosine"):
            raise ValueError(f"loss must be 'mse' or 'cosine', got {loss!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        for argument, value in (("student_width", student_width), ("teacher_width", teacher_width)):
            if value is not None and value < 1:
                raise ValueError(f"{argument} must be a positive channel count or None (read it from the model)")
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer
        self.loss = loss
        self.weight = float(weight)
        self.student_width = student_width
        self.teacher_width = teacher_width
        self.projection: nn.Module | None = None
        self._bound = False

    @property
    def name(self) -> str:
        """How logs name this loss: ``<student_layer>_to_<teacher_layer>``."""
        return f"{self.student_layer}_to_{self.teacher_layer}"

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        """Check both layer names against the models, read their widths and create the projection if they differ.

        Raises:
            ValueError: a name is not a module of its model (the message lists the closest names), or a width can
                be neither read from the model nor was given.
        """
        find_module(student, self.student_layer, "student_layer", "student")
        find_module(teacher, self.teacher_layer, "teacher_layer", "teacher")
        student_width, student_is_map = output_width(student, self.student_layer)
        teacher_width, _ = output_width(teacher, self.teacher_layer)
        student_width = self.student_width or student_width
        teacher_width = self.teacher_width or teacher_width
        for side, layer, width in (
            ("student", self.student_layer, student_width),
            ("teacher", self.teacher_layer, teacher_width),
        ):
            if width is None:
                module = type((student if side == "student" else teacher).get_submodule(layer)).__name__
                raise ValueError(
                    f"cannot read the output width of the {side}'s {layer!r} ({module}: no Conv, Linear, BatchNorm or "
                    f"LayerNorm in or before it); give {side}_width (its output channels) to FeatureLoss"
                )
        if self._bound and (student_width, teacher_width) != (self.student_width, self.teacher_width):
            raise ValueError(
                f"this FeatureLoss was bound to widths {self.student_width} -> {self.teacher_width} and cannot be "
                f"reused for {student_width} -> {teacher_width}; make one FeatureLoss per student/teacher pair"
            )
        self.student_width, self.teacher_width = student_width, teacher_width
        if student_width != teacher_width and self.projection is None:
            self.projection = (
                nn.Conv2d(student_width, teacher_width, kernel_size=1)
                if student_is_map
                else nn.Linear(student_width, teacher_width)
            )
        self._bound = True

    def project(self, student_feature: Tensor) -> Tensor:
        """The student's feature in the teacher's width (itself when the widths are equal)."""
        if self.projection is None:
            return student_feature
        if isinstance(self.projection, nn.Conv2d):
            if student_feature.dim() == 4:
                return self.projection(student_feature)
            weight = self.projection.weight[:, :, 0, 0]
            return F.linear(student_feature, weight, self.projection.bias)
        if student_feature.dim() == 4:
            return self.projection(student_feature.movedim(1, -1)).movedim(-1, 1)
        return self.projection(student_feature)

    def _expected_width(self, side: str) -> int | None:
        """The width a captured feature must have; the projection's inputs follow a structurally pruned student."""
        if side == "teacher":
            return self.teacher_width
        if isinstance(self.projection, nn.Conv2d):
            return self.projection.in_channels
        if isinstance(self.projection, nn.Linear):
            return self.projection.in_features
        return self.student_width

    def _check_width(self, feature: Tensor, side: str) -> None:
        width = self._expected_width(side)
        layer = self.student_layer if side == "student" else self.teacher_layer
        if feature.dim() < 2 or feature.shape[channel_dim(feature)] != width:
            raise ValueError(
                f"the {side}'s {layer!r} returned shape {tuple(feature.shape)}, but FeatureLoss expects {width} "
                f"channels in dim {channel_dim(feature) if feature.dim() >= 2 else 1} (dim 1 of a 4-D map, else the "
                f"last); set {side}_width, or name a layer whose output is (batch, channels, height, width), "
                "(batch, width) or (batch, length, width)"
            )

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        """The unweighted loss between the two captured outputs (``weight`` is applied by the distillation module)."""
        if not self._bound:
            raise RuntimeError("FeatureLoss.bind(student, teacher) must run before the loss (DistillationModule does)")
        self._check_width(student_feature, "student")
        self._check_width(teacher_feature, "teacher")
        student_feature, teacher_feature = pool_to_common_size(student_feature, teacher_feature)
        student_feature = self.project(student_feature)
        if student_feature.shape != teacher_feature.shape:
            raise ValueError(
                f"the student's {self.student_layer!r} gives shape {tuple(student_feature.shape)} (after projection "
                f"and pooling) but the teacher's {self.teacher_layer!r} {tuple(teacher_feature.shape)}; only feature "
                "maps are resized, so other features must agree in every dimension but the channels"
            )
        return feature_loss(student_feature, teacher_feature.detach(), self.loss)

    def extra_repr(self) -> str:
        return (
            f"student_layer={self.student_layer!r}, teacher_layer={self.teacher_layer!r}, loss={self.loss!r}, "
            f"weight={self.weight}, widths={self.student_width}->{self.teacher_width}"
        )
