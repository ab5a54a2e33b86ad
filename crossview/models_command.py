"""`crossview models list|add|add-text-image|remove`: the built-in zoo and the user's own models.

    crossview models add reid/site-v1 --onnx runs/site/model.onnx --like reid/osnet-x0.25-msmt17
    crossview models add-text-image text/clip --image-onnx vision.onnx --text-onnx text.onnx --tokenizer tok/
    crossview models list            # built-in and user models (user ones marked "user"), checksums verified
    crossview models remove reid/site-v1

User models are kept in ``$CROSSVIEW_USER_MODELS`` (else ``~/.local/share/crossview/models``); see
`models.zoo.user` and `models.zoo.text_image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.errors import CrossviewError, InvalidInputError
from models.zoo.spec import DEFAULT_COSINE_RANGE, DEFAULT_TEXT_MAX_LENGTH


def _row(name: str, user: bool, download: bool) -> tuple[tuple[str, ...], bool]:
    from models.zoo import get_spec, resolve_model

    try:
        spec = get_spec(name)
    except CrossviewError as exc:
        return (name, "onnx", "-", "broken", "user", str(exc)), False
    try:
        resolved = resolve_model(name, allow_download=download)
        where, status, ok = str(resolved.path), f"ok ({resolved.source})", True
    except CrossviewError as exc:
        where, status, ok = str(exc), "missing", False
    kind = "user" if user else "built-in"
    size = spec.total_size
    if spec.task == "text-image":  # both towers and the tokenizer
        from models.zoo.text_image import load_text_image_model

        model = load_text_image_model(name)
        size = sum(f.size for f in (*model.image_spec.files, model.text, *model.tokenizer_files))
    shown_format = "text-image" if spec.task == "text-image" else spec.format
    return (name, shown_format, f"{size / 1e6:.2f} MB", status, kind, where), ok


def list_models(download: bool = False) -> int:
    """Print every built-in and user model, where it resolved (checksum verified) and its size; 1 if any
    cannot be used."""
    from models.zoo import model_names, user_model_names

    results = [_row(name, False, download) for name in model_names()]
    results += [_row(name, True, False) for name in user_model_names()]
    rows = [row for row, _ in results]
    header = ("model", "format", "size", "status", "kind")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  path")
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    return 0 if all(ok for _, ok in results) else 1


def register(models_app: typer.Typer) -> None:
    """Add `models add` and `models remove` to the `models` group."""

    @models_app.command("add")
    def models_add(
        name: Annotated[str, typer.Argument(help="Name for the model, e.g. reid/site-v1.")],
        onnx: Annotated[Path, typer.Option("--onnx", help="The ONNX file (dynamic or fixed batch).")],
        like: Annotated[str, typer.Option("--like", help="Built-in Re-ID model whose preprocessing it takes.")
                        ] = "reid/osnet-x0.25-msmt17",
        force: Annotated[bool, typer.Option("--force", help="Replace a user model of that name.")] = False,
    ) -> None:
        """Register your own Re-ID model (an ONNX file): copied into the user models folder with its checksum."""
        from models.zoo.user import add_user_model

        model = add_user_model(name, onnx, like, force=force)
        typer.echo(f"added {model.spec.fingerprint} ({model.spec.weights.size / 1e6:.2f} MB, like {model.like}, "
                   f"{model.spec.output_dim}-d) at {model.onnx}")

    @models_app.command("add-text-image")
    def models_add_text_image(
        name: Annotated[str, typer.Argument(help="Name for the model, e.g. text/clip-b32.")],
        image_onnx: Annotated[Path, typer.Option("--image-onnx", help="The image tower (ONNX, [N,3,H,W] in).")],
        text_onnx: Annotated[Path, typer.Option("--text-onnx", help="The text tower (ONNX, input_ids in).")],
        tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Its tokenizer folder (transformers).")],
        input_size: Annotated[int, typer.Option("--input-size", help="The image tower's square input side.")] = 224,
        max_length: Annotated[int, typer.Option("--max-length", help="Text tokens the text tower takes.")
                              ] = DEFAULT_TEXT_MAX_LENGTH,
        cosine_range: Annotated[str, typer.Option(
            "--cosine-range", help="LOW,HIGH: the text-image cosines that score 0 (unrelated) and 1 (a close "
            "match), linear between, clipped outside; `crossview eval --text-image-model` prints where this "
            "model's cosines fall.")] = ",".join(str(v) for v in DEFAULT_COSINE_RANGE),
        force: Annotated[bool, typer.Option("--force", help="Replace a model of that name.")] = False,
    ) -> None:
        """Register a CLIP-style text-image model (both towers and the tokenizer, copied with their checksums);
        an edge uses it for search by description with text_image.model=NAME."""
        from models.zoo.spec import check_cosine_range
        from models.zoo.text_image import add_text_image_model
        from models.zoo.user import UserModelError

        try:
            low_high = check_cosine_range(cosine_range.split(","))
        except InvalidInputError as exc:
            raise UserModelError(f"--cosine-range: {exc} (write LOW,HIGH, e.g. 0.15,0.35)") from None
        model = add_text_image_model(name, image_onnx, text_onnx, tokenizer, input_hw=(input_size, input_size),
                                     max_length=max_length, cosine_range=low_high, force=force)
        typer.echo(f"added {model.fingerprint} ({model.image_spec.output_dim}-d, image {input_size}x{input_size}, "
                   f"text up to {model.max_length} tokens) at {model.manifest}")

    @models_app.command("remove")
    def models_remove(name: Annotated[str, typer.Argument(help="A user model's name.")]) -> None:
        """Delete a user model (its files and manifest); built-in models cannot be removed."""
        from models.zoo import TEXT_IMAGE_TASK, model_names
        from models.zoo.text_image import remove_text_image_model
        from models.zoo.user import UserModelError, manifest_task, remove_unreadable_model, remove_user_model

        if name in model_names():
            raise UserModelError(f"{name!r} is a built-in model; only user models can be removed")
        remove = remove_text_image_model if manifest_task(name) == TEXT_IMAGE_TASK else remove_user_model
        try:
            removed = remove(name)
        except UserModelError as exc:  # a manifest that cannot be read: what it left goes all the same
            remove_unreadable_model(name)
            typer.echo(f"removed {name} ({exc})")
            return
        typer.echo(f"removed {removed.fingerprint}")
