"""Multi-layer perceptrons for image classification: a configurable MLP and the MNIST presets."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """A fully connected classifier: ``Flatten -> [Linear -> ReLU -> Dropout] * n -> Linear``.

    The hidden layers live in ``self.hidden`` (a ``Sequential`` of ``Linear``, ``ReLU`` and, where ``dropout > 0``,
    ``Dropout`` modules) and the output layer is ``self.classifier``, so pruning and quantization can find them by
    name.

    Args:
        num_classes: Number of output logits.
        in_features: Size of one flattened input example (784 for 28x28 MNIST, 64 for 8x8 digits).
        hidden_sizes: Width of each hidden layer, input side first.
        dropout: Dropout probability after each hidden activation; 0 disables dropout.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_features: int = 784,
        hidden_sizes: list[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_sizes = [512, 256] if hidden_sizes is None else list(hidden_sizes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if any(size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden_sizes must all be positive, got {hidden_sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.hidden(self.flatten(x)))


class MNISTClassifier(MLP):
    """The MNIST teacher: 784 -> 512 -> 256 -> 10 with dropout 0.2 (about 535k parameters).

    Args:
        num_classes: Number of output logits.
        in_features: Size of one flattened input example.
        dropout: Dropout probability after each hidden activation.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784, dropout: float = 0.2) -> None:
        super().__init__(num_classes=num_classes, in_features=in_features, hidden_sizes=[512, 256], dropout=dropout)


class TinyMNIST(MLP):
    """The MNIST student: 784 -> 64 -> 10, no dropout (about 51k parameters, about 10x fewer than the teacher).

    Args:
        num_classes: Number of output logits.
        in_features: Size of one flattened input example.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784) -> None:
        super().__init__(num_classes=num_classes, in_features=in_features, hidden_sizes=[64], dropout=0.0)
