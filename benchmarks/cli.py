"""The one argument parser of the harnesses: each serves a model file as `make bento` would."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(doc: str, rows: bool = True) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` that takes the model, its params and metrics (and feature rows).

    Args:
        doc: the harness's module docstring; its first paragraph becomes the description.
        rows: add ``--rows``, the feature table the requests are drawn from.
    """
    found = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    found.add_argument("--model", type=Path, required=True, help="the fitted model (joblib)")
    found.add_argument("--params", type=Path, required=True, help="params.yaml")
    found.add_argument("--metrics-in", type=Path, required=True, help="evaluate.json")
    if rows:
        found.add_argument("--rows", type=Path, required=True, help="feature table to draw from")
    return found
