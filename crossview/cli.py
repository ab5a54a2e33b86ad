"""The `crossview` command. Configuration is read here and nowhere else."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import click
import typer
from typer.core import TyperGroup

from crossview.admin_commands import register as register_admin_commands
from crossview.config import load_config
from crossview.models_command import register as register_models_commands
from crossview.operator_commands import register as register_operator_commands
from crossview.train_command import train_app
from models.errors import CrossviewError
from models.zoo.spec import DEFAULT_TEXT_IMAGE_WEIGHT

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Find the same person across cameras.")
models_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
app.add_typer(models_app, name="models")
edge_app = typer.Typer(no_args_is_help=True, help="The edge node: cameras to short lists.")
app.add_typer(edge_app, name="edge")
register_operator_commands(app)  # enroll, search, watch, alerts: clients of the hub's REST API
register_admin_commands(app)  # operators ..., audit ...: the admins' commands, through the REST API too
app.add_typer(train_app, name="train")


@dataclass
class DetectConfig:
    """`crossview detect`: the edge's detector and tracker on a video."""

    video: str = "one-by-one-person-detection.mp4"
    camera_id: str = "cam-a"
    detector: str = "detect/yolov8n-int8-openvino"
    tracker: Literal["bytetrack", "botsort"] = "bytetrack"
    stride: int = 2
    max_frames: int = 300

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride: expected >= 1, got {self.stride}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames: expected >= 1, got {self.max_frames}")


ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of settings.")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. stride=1")]


@models_app.command("list")
def models_list(
    download: Annotated[bool, typer.Option(help="Download models that are not found locally.")] = False,
) -> None:
    """Print every built-in and user model, where it resolved (checksum verified) and its size."""
    from crossview.models_command import list_models

    raise typer.Exit(list_models(download))


register_models_commands(models_app)  # models add, models remove: the user's own Re-ID models


@app.command()
def demo(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    once: Annotated[bool, typer.Option("--once", help="Exit after printing the result instead of serving.")] = False,
) -> None:
    """A hub and two edges here: a person enrolled from camera A is found on camera B; then serve the web UI."""
    from crossview.demo_command import demo_command

    raise typer.Exit(demo_command(config, overrides or [], once=once))


@app.command()
def detect(
    video: Annotated[str | None, typer.Argument(help="A video file or sample name.")] = None,
    config: ConfigOption = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="key=value override, e.g. stride=1")
                         ] = None,
) -> None:
    """Run the edge's detector and tracker on a video and print what it saw."""
    cfg = load_config(DetectConfig, config, [*(overrides or []), *([f"video={video}"] if video else [])])
    from tqdm import tqdm

    from crossview.run_detect import format_frame, format_summary, summarise_video
    from models.zoo import resolve_sample

    video = Path(cfg.video) if Path(cfg.video).exists() else resolve_sample(cfg.video)
    summary = summarise_video(video, camera_id=cfg.camera_id, max_frames=cfg.max_frames, stride=cfg.stride,
                              model=cfg.detector, tracker_type=cfg.tracker,
                              on_frame=lambda record: tqdm.write(format_frame(record)))
    typer.echo(format_summary(summary, per_frame=False))


@app.command("eval")
def eval_(
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    format: Annotated[str, typer.Option("--format", help="market1501 | cuhk03 | mars")],
    model: Annotated[str, typer.Option(help="Stage-one Re-ID model: zoo/user name or .onnx path.")] = "reid/intel-0288",
    rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking.")] = False,
    stage2: Annotated[str | None, typer.Option(help="Stage-two model(s), comma-separated.")] = None,
    shortlist: Annotated[int, typer.Option(help="Short-list size K for two-stage.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    png: Annotated[Path | None, typer.Option(help="Where to write the CMC curve PNG.")] = None,
    text_labels: Annotated[Path | None, typer.Option(
        "--text-labels", help="Market-1501 attribute labels (.mat): evaluate text search instead.")] = None,
    text_image_model: Annotated[str | None, typer.Option(
        "--text-image-model", help="With --text-labels: a registered text-image model to mix in.")] = None,
    text_image_weight: Annotated[float, typer.Option(
        "--text-image-weight", help="Its weight against the attribute score (0-1).")] = DEFAULT_TEXT_IMAGE_WEIGHT,
) -> None:
    """Rank-1/5/10, mAP and mINP of a Re-ID model (optionally two-stage) on a dataset."""
    from crossview.eval_command import eval_command

    stage2_models = [s.strip() for s in stage2.split(",") if s.strip()] if stage2 else None
    code = eval_command(data, format, model, rerank, stage2_models, shortlist, json_out, png,
                        text_labels=text_labels, text_image=(text_image_model, text_image_weight))
    raise typer.Exit(code)


@app.command()
def calibrate(
    data: Annotated[Path, typer.Option(help="Labelled folder to fit on (e.g. CUHK03 train, a site's own).")],
    format: Annotated[str, typer.Option("--format", help="market1501 | cuhk03")],
    out: Annotated[Path, typer.Option(help="Folder (or .json file) for the calibration file(s).")],
    model: Annotated[str, typer.Option(help="The edge's Re-ID model.")] = "reid/intel-0288",
    judge: Annotated[str | None, typer.Option(help="Also calibrate this hub judge (reid).")] = None,
    check: Annotated[Path | None, typer.Option(help="A held-out labelled folder to check the fit on.")] = None,
    png: Annotated[Path | None, typer.Option(help="Where to draw the calibration curve.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit P(same) = the probability two tracklets show the same person, from a model's score."""
    from crossview.calibrate_command import calibrate_command

    raise typer.Exit(calibrate_command(data, format, model, out, judge=judge, check=check, png=png,
                                       json_out=json_out))


@edge_app.command("replay")
def edge_replay(
    files: Annotated[list[Path], typer.Argument(help="Recorded video files.")],
    camera: Annotated[list[str] | None, typer.Option("--camera", help="Camera name (one, or one per file).")] = None,
    config: ConfigOption = None,
    workdir: Annotated[Path | None, typer.Option(help="Where the store, outbox and gallery live.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="key=value override, repeatable.")] = None,
    serve: Annotated[bool | None, typer.Option(
        "--serve/--no-serve", help="After the files, keep answering the hub's searches until Ctrl-C / SIGTERM "
        "(serve_after_replay; off by default).")] = None,
) -> None:
    """Run recorded footage through the same pipeline as live cameras, as fast as the machine allows."""
    from crossview.edge_command import replay_command
    from edge.native_logs import route_native_output

    route_native_output()  # FFmpeg's and OpenCV's own lines through logging (DEBUG), not raw on stderr
    raise typer.Exit(replay_command(files, camera, config=config, overrides=set_ or [], workdir=workdir,
                                    serve=serve))


@edge_app.command("run")
def edge_run(
    config: ConfigOption = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="key=value override, repeatable.")] = None,
) -> None:
    """Run the configured cameras through the edge pipeline and send short lists to the hub (Ctrl-C stops)."""
    from crossview.edge_command import run_command
    from edge.native_logs import route_native_output

    route_native_output()
    raise typer.Exit(run_command(config, set_ or []))


class _ServeByDefault(TyperGroup):
    """`crossview hub [key=value ...]` serves (the `serve` subcommand) unless a subcommand is named."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


hub_app = typer.Typer(cls=_ServeByDefault, add_completion=False,
                      help="The hub: `crossview hub` (or `hub serve`) with --config FILE and key=value settings "
                           "serves; `hub export-training DIR` writes training data.")
app.add_typer(hub_app, name="hub")


@hub_app.command("serve")
def hub(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Serve the hub (edges' sessions, gallery, stage two) until Ctrl-C or SIGTERM; e.g. port=7443."""
    from crossview.hub_command import hub_command

    raise typer.Exit(hub_command(config, overrides or []))


@hub_app.command("export-training")
def hub_export_training(
    out: Annotated[Path, typer.Argument(help="Folder to write (Market-1501 layout: bounding_box_train/).")],
    since: Annotated[str | None, typer.Option(help="Only sightings recorded at or after this ISO time.")] = None,
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder (replacing an export).")
                     ] = False,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Hub setting, e.g. data_dir=...")
                         ] = None,
) -> None:
    """Write the hub's confirmed sightings (identity, camera, crop) as a training folder for `train reid`."""
    from crossview.hub_command import export_training_command

    raise typer.Exit(export_training_command(out, config, overrides or [], since=since, force=force))


def main() -> None:
    """Entry point: every crossview error is one clear line on stderr, not a traceback."""
    try:
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except CrossviewError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:
        # usage errors from typer's click (shown the way click shows them)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
