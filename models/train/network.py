"""The trainable network: a zoo Re-ID model (or an .onnx file) converted to torch, plus a training head.

The starting model is converted with onnx2torch (the path `models.embed.torch` uses, including its
`infer_ranks` fix for torchreid exports) and made trainable: train mode for BatchNorm and
`requires_grad` on every parameter. The head is a BNNeck (BatchNorm1d without shift) and a bias-free
linear classifier; only the backbone is exported, so the exported model has the same input, output
and preprocessing as the starting one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import CrossviewError, ModelNotFoundError, require
from models.zoo import ModelSpec, RemoteFile, get_spec, resolve_model, sha256_of

#: preprocessing assumed for a bare .onnx file when no zoo model is named as its `like`
DEFAULT_LIKE = "reid/osnet-x0.25-msmt17"


class TrainSetupError(CrossviewError, ValueError):
    """A model, teacher or setting that training cannot start with (raised before any training)."""


@dataclass(frozen=True)
class InitModel:
    """The model training starts from: its ONNX file, how to feed it, its input and output names."""

    name: str
    spec: ModelSpec
    onnx_path: Path
    input_name: str
    output_name: str

    def __post_init__(self) -> None:
        if not self.onnx_path.is_file():
            raise TrainSetupError(f"init model: expected an .onnx file, got {self.onnx_path}")


def _load_onnx(path: Path) -> Any:
    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common base class
        raise TrainSetupError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def resolve_init(init: str, *, like: str = DEFAULT_LIKE) -> InitModel:
    """A zoo name (ONNX format, task reid) or a path to an .onnx file → InitModel.

    A bare file takes the preprocessing of zoo model `like`, with its own input size and output
    dimension read from the graph.
    """
    if not init:
        raise TrainSetupError("--init: expected a zoo model name or an .onnx file, got an empty string")
    path = Path(init)
    if path.suffix.lower() == ".onnx" or path.exists():
        if not path.is_file():
            raise TrainSetupError(f"--init: expected an .onnx file, got {init!r} (no such file)")
        model = _load_onnx(path)
        base = get_spec(like)
        dims = _graph_dims(model, path)
        spec = dataclasses.replace(
            base, name=path.stem, files=(RemoteFile(path.name, sha256_of(path), path.stat().st_size),),
            primary=path.name,
            input_hw=dims[0] or base.input_hw, output_dim=dims[1] or base.output_dim, input_name=None,
            output_name=None, notes=f"trained from {init}")
        return InitModel(init, spec, path, model.graph.input[0].name, model.graph.output[0].name)
    try:
        spec = get_spec(init)
    except ModelNotFoundError as exc:
        raise TrainSetupError(f"--init: {exc}") from None
    if spec.task != "reid":
        raise TrainSetupError(f"--init: {init!r} is a {spec.task} model, not a Re-ID model")
    if spec.format != "onnx":
        raise TrainSetupError(
            f"--init: {init!r} is a {spec.format} model, which cannot be converted to torch; "
            f"start from an ONNX Re-ID model such as {DEFAULT_LIKE!r}")
    path = resolve_model(init, progress=False).path
    model = _load_onnx(path)
    return InitModel(init, spec, path, model.graph.input[0].name, model.graph.output[0].name)


def _graph_dims(model: Any, path: Path) -> tuple[tuple[int, int] | None, int | None]:
    """(input H, W) and output dimension from the graph where they are fixed numbers."""
    if len(model.graph.input) != 1 or len(model.graph.output) < 1:
        raise TrainSetupError(f"{path}: expected a model with one image input, got {len(model.graph.input)} inputs")
    in_dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(in_dims) != 4:
        raise TrainSetupError(f"{path}: expected an (N, 3, H, W) input, got rank {len(in_dims)}")
    hw = (in_dims[2], in_dims[3]) if in_dims[2] > 0 and in_dims[3] > 0 else None
    dim = out_dims[-1] if out_dims and out_dims[-1] > 0 else None
    return hw, dim


def convert_backbone(init: InitModel) -> Any:
    """The init model as a trainable torch module (train mode, every parameter requiring grad).

    A model onnx2torch cannot convert, or whose converted module does not give (N, D) features on a
    dummy batch, raises TrainSetupError here, before any training.
    """
    torch = require("torch")
    onnx2torch = require("onnx2torch")
    from models.embed.torch import infer_ranks

    model = _load_onnx(init.onnx_path)
    try:
        module = onnx2torch.convert(infer_ranks(model))
    except Exception as exc:  # onnx2torch raises NotImplementedError, KeyError, ... for unsupported graphs
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainSetupError(f"{init.name}: cannot be converted to torch for training ({message})") from None
    module.train()
    params = list(module.parameters())
    if not params:
        raise TrainSetupError(f"{init.name}: the converted model has no trainable parameters")
    for param in params:
        param.requires_grad_(True)
    pretrained = {key: value.clone() for key, value in module.state_dict().items()}
    height, width = init.spec.input_hw
    try:
        with torch.no_grad():
            out = _features(module(torch.zeros(2, 3, height, width)))
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainSetupError(f"{init.name}: the converted model does not run in train mode ({message})") from None
    if tuple(out.shape) != (2, init.spec.output_dim):
        raise TrainSetupError(
            f"{init.name}: expected (2, {init.spec.output_dim}) features from the converted model, "
            f"got {tuple(out.shape)}")
    # The dummy forward moved BatchNorm running statistics: reload the exact pretrained values.
    module.load_state_dict(pretrained)
    return module


def _features(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) else output


def build_network(backbone: Any, dim: int, n_classes: int, *, seed: int) -> Any:
    """backbone + BNNeck + classifier (`n_classes` 0: no classifier, distillation only).

    forward(x) → (features (N, dim) as the backbone gives them, logits (N, n_classes) or None).
    """
    torch = require("torch")
    nn = torch.nn

    class ReIdNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.neck = nn.BatchNorm1d(dim)
            self.neck.bias.requires_grad_(False)
            self.classifier = nn.Linear(dim, n_classes, bias=False) if n_classes else None
            if self.classifier is not None:
                generator = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    self.classifier.weight.normal_(0.0, 0.001, generator=generator)

        def forward(self, x: Any) -> tuple[Any, Any]:
            features = _features(self.backbone(x))
            logits = self.classifier(self.neck(features)) if self.classifier is not None else None
            return features, logits

    return ReIdNetwork()
