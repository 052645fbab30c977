"""params.yaml as frozen, typed models: a typo or a bad value fails before any work is done."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdelay.core.errors import ParamsError

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
Month = Annotated[int, Field(ge=1, le=12)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Frozen):
    seed: int = Field(ge=0)


class IngestParams(_Frozen):
    source: str = Field(min_length=1)
    sample_frac: Fraction = 1.0


class SplitParams(_Frozen):
    method: Literal["time", "random"] = "time"
    train_months: tuple[Month, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    valid_months: tuple[Month, ...] = (10,)
    test_months: tuple[Month, ...] = (11, 12)
    valid_frac: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    test_frac: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2

    @model_validator(mode="after")
    def _disjoint(self) -> SplitParams:
        groups = (self.train_months, self.valid_months, self.test_months)
        if self.method == "time" and any(not g for g in groups):
            raise ValueError("time split needs non-empty train_months, valid_months, test_months")
        months = [m for g in groups for m in g]
        if len(months) != len(set(months)):
            raise ValueError("train_months, valid_months and test_months must not overlap")
        if self.valid_frac + self.test_frac >= 1.0:
            raise ValueError("valid_frac + test_frac must be below 1")
        return self


class FeaturesParams(_Frozen):
    cancelled: Literal["drop", "delayed"] = "drop"
    delay_threshold_min: int = Field(default=15, ge=1)
    congestion: bool = True  # departures scheduled at the origin around the hour
    aircraft_day: bool = True  # the tail number's earlier legs that day, its turnaround
    # operations known this many hours before the scheduled departure: the previous leg's
    # departure delay, the origin's recent departures (None: not used)
    known_hours: float | None = Field(default=2.0, gt=0.0, le=24.0)
    split: SplitParams = SplitParams()


class LogRegParams(_Frozen):
    C: float = Field(default=1.0, gt=0.0)
    max_iter: int = Field(default=500, ge=10)


class HGBParams(_Frozen):
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    max_iter: int = Field(default=300, ge=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    min_samples_leaf: int = Field(default=200, ge=1)
    l2_regularization: float = Field(default=1.0, ge=0.0)


class Candidates(_Frozen):
    """One optional entry per model family in the registry (flightdelay.model.candidates)."""

    logreg: LogRegParams | None = None
    hgb: HGBParams | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Candidates:
        if not self.names():
            raise ValueError("train.candidates must name at least one candidate")
        return self

    def names(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class HistoryParams(_Frozen):
    """Smoothed delay rates learned from the training rows (``FlightFeatures``)."""

    enabled: bool = True
    smoothing: float = Field(default=20.0, ge=0.0)  # pseudo-flights at the overall rate
    folds: int = Field(default=5, ge=2)  # out-of-fold values for the rows the model is fitted on


class TrainParams(_Frozen):
    metric: Literal["roc_auc", "average_precision", "neg_log_loss"] = "roc_auc"
    refit: Literal["train", "train_valid"] = "train_valid"
    history: HistoryParams = HistoryParams()
    candidates: Candidates


class Gates(_Frozen):
    min_roc_auc: float = Field(default=0.5, ge=0.0, le=1.0)
    max_brier: float = Field(default=0.25, ge=0.0, le=1.0)
    min_lift_over_dummy: float = Field(default=0.0, ge=0.0, le=0.5)


class EvaluateParams(_Frozen):
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    calibration_bins: int = Field(default=10, ge=2, le=100)
    gates: Gates = Gates()


class BenchmarkParams(_Frozen):
    single_rows: int = Field(default=500, ge=10)
    batch_size: int = Field(default=100, ge=1)
    batches: int = Field(default=100, ge=5)
    bulk_rows: int = Field(default=100_000, ge=100)


class ReportParams(_Frozen):
    """The pull-request report's intervals of test-metric changes (``flightdelay report``)."""

    bootstrap_resamples: int = Field(default=1000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, ge=0.5, lt=1.0)


class Params(_Frozen):
    base: BaseParams
    ingest: IngestParams
    features: FeaturesParams
    train: TrainParams
    evaluate: EvaluateParams
    benchmark: BenchmarkParams
    report: ReportParams


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the params file.

    Args:
        path: the YAML file (params.yaml at the repository root by default).

    Raises:
        ParamsError: naming the file and every offending key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read params: {exc}") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ParamsError(f"{path}: invalid params: {problems}") from exc


def params_hash(params: Params) -> str:
    """SHA-256 of every validated parameter, canonical JSON: what a model was made with.

    The one digest of a params file: MLflow's ``dvc.params_hash`` tag and the Bento model's
    ``params_hash`` metadata are this value, so the two can be matched.
    """
    canonical = json.dumps(params.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
