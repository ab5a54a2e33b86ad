"""`crossview train`: the learning loop (issue 14): training Re-ID models and fine-tuning the judge."""

from __future__ import annotations

import typer

from crossview.train_judge_command import register as register_judge_commands

train_app = typer.Typer(no_args_is_help=True, help="Train and fine-tune models (the learning loop).")
register_judge_commands(train_app)  # judge-data, judge
