"""The served model: features and scorer as plain arrays, loaded without scikit-learn or pandas.

``flightdelay.compile.compiler`` compiles a fitted Pipeline into a ``ServingModel``; ``save``
writes it (``MANIFEST``, ``ARRAYS`` and, for trees, ``TREES``) next to the pickled Pipeline in
the BentoML model, and ``load`` reads it back with numpy and onnxruntime alone. So the API's
workers never import scikit-learn, scipy, pandas or pyarrow (about 100 MB per process), and one
flight is scored in microseconds:

* features: the lookups ``FlightFeatures`` learned in ``fit`` (category codes, aircraft by tail
  number, federal holidays) as a ``feature_table.FeatureTable``, the code ``FlightFeatures``
  itself runs: row by row in plain Python for a few rows, column-wise in numpy for more;
* trees: the HistGradientBoostingClassifier's trees as one ONNX ``TreeEnsemble`` (double
  precision, categorical splits as set membership), run by onnxruntime;
* linear: the logreg candidate's imputer, scaler, one-hot and coefficients as one affine map.

The sklearn Pipeline stays the reference: the tests hold the two to 1e-6 on whole test sets.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from flightdelay.contract.feature_table import FEATURES, PLANE, FeatureTable, Matrix, Record
from flightdelay.contract.schema import CATEGORICAL

#: inputs up to this many rows build their features row by row in plain Python
SMALL_ROWS = 4
#: inputs from this many rows run the trees on every core (when the model was loaded for that):
#: onnxruntime's TreeEnsemble splits rows over threads from about 64 rows on (100 rows: 1.0 ms
#: on one thread, 0.55 ms on two); below that a second thread does not help
PARALLEL_ROWS = 64
#: files of a saved ServingModel
MANIFEST, ARRAYS, TREES, NATIVE = "serving.json", "serving.npz", "trees.onnx", "trees.so"
FORMAT = 2

log = logging.getLogger(__name__)


class ServingModelError(Exception):
    """A saved ServingModel that cannot be read: the message names the file and the problem."""


def sigmoid(raw: Matrix) -> Matrix:
    proba: Matrix = 1.0 / (1.0 + np.exp(-raw))
    return proba


def encode(values: Matrix, categories: Matrix) -> Matrix:
    """OrdinalEncoder(unknown -> NaN, missing -> NaN) of one column."""
    if len(categories) == 0:
        return np.full(len(values), np.nan)
    pos = np.minimum(np.searchsorted(categories, values), len(categories) - 1)
    return np.where(categories[pos] == values, pos.astype(np.float64), np.nan)


def cores(threads: int | None) -> int:
    """``threads`` when given (at least 1), else every core of the machine."""
    return max(1, threads) if threads is not None else os.cpu_count() or 1


def _session(onnx: bytes, threads: int) -> Any:
    import onnxruntime as ort  # noqa: PLC0415 - only the trees need it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


class NativeTrees:
    """The classifier's trees compiled to a shared library (``compile.native``), called with
    ctypes: ``raw`` of a FeatureTable matrix, split over ``threads`` for large inputs (the call
    releases the GIL).

    Raises:
        OSError: the library cannot be loaded, or it reads another number of features.
    """

    def __init__(self, path: Path, width: int, threads: int | None = None) -> None:
        self.path, self.width, self.threads = Path(path), width, cores(threads)
        library = ctypes.CDLL(str(self.path))
        self._predict = library.predict_dense
        self._predict.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        self._predict.restype = None
        library.get_num_feature.restype = ctypes.c_int32
        if library.get_num_feature() != width:
            raise OSError(
                f"{path}: the library reads {library.get_num_feature()} features, not {width}"
            )
        self._pool: Any = None
        self._lock = threading.Lock()

    def _run(self, X: Matrix, out: Matrix) -> None:  # noqa: N803
        self._predict(X.ctypes.data, X.shape[0], X.shape[1], out.ctypes.data)

    def raw(self, X: Matrix) -> Matrix:  # noqa: N803
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(len(X), dtype=np.float64)
        if self.threads == 1 or len(X) < PARALLEL_ROWS * self.threads:
            self._run(X, out)
            return out
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="native-trees")
        bounds = np.linspace(0, len(X), self.threads + 1).astype(int)
        parts = [(X[a:b], out[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        list(self._pool.map(lambda part: self._run(*part), parts))
        return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TreeScorer:
    """The classifier's trees as an ONNX TreeEnsemble, run by onnxruntime, or, when it has
    them, as ``NativeTrees`` (faster at every size; ONNX stays the fallback).

    Args:
        onnx: the serialized model (input ``X``: float64 rows in ``order``; output: raw score),
            or None when no tree splits (the score is then ``constant``).
        order: ``FeatureTable`` column of each tree input column.
        encoders: per leading tree input column, the categories of the classifier's own
            ordinal encoding (category code -> bin).
        constant: the raw score before the trees (sklearn's baseline plus single-leaf trees).
        threads: cores for inputs of ``PARALLEL_ROWS`` rows or more (default: every core).
    """

    kind = "trees"

    def __init__(
        self,
        onnx: bytes | None,
        order: Sequence[int],
        encoders: Sequence[Matrix],
        constant: float,
        threads: int | None = None,
    ) -> None:
        self.onnx, self.order, self.encoders = onnx, list(order), list(encoders)
        self.constant, self.threads = float(constant), cores(threads)
        self._single = _session(onnx, 1) if onnx is not None else None
        self._parallel: Any = None  # made on the first large input
        self._lock = threading.Lock()
        self.native: NativeTrees | None = None
        if self._single is not None:
            width = self._single.get_inputs()[0].shape[1]
            if width != len(self.order):
                raise ValueError(f"the trees read {width} columns, the layout has {len(order)}")

    def tree_input(self, X: Matrix) -> Matrix:  # noqa: N803
        """FeatureTable output -> the classifier's own column order and category codes."""
        out = X[:, self.order]
        for j, categories in enumerate(self.encoders):
            out[:, j] = encode(out[:, j], categories)
        return out

    def _session_for(self, rows: int) -> Any:
        if self.threads == 1 or rows < PARALLEL_ROWS:
            return self._single
        with self._lock:
            if self._parallel is None:
                self._parallel = _session(self.onnx, self.threads)  # type: ignore[arg-type]
            return self._parallel

    def raw(self, Xt: Matrix) -> Matrix:  # noqa: N803
        if self._single is None:
            return np.full(len(Xt), self.constant)
        scores: Matrix = self._session_for(len(Xt)).run(None, {"X": Xt})[0][:, 0]
        return self.constant + scores

    def proba(self, X: Matrix) -> Matrix:  # noqa: N803
        if self.native is not None:
            return sigmoid(self.native.raw(X))
        return sigmoid(self.raw(self.tree_input(X)))

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """Scalars (JSON) and arrays (npz) that ``load`` turns back into this scorer."""
        arrays = {f"encoder_{j}": c for j, c in enumerate(self.encoders)}
        meta = {
            "order": self.order,
            "encoders": len(self.encoders),
            "constant": self.constant,
            "trees": self.onnx is not None,
            "native": sha256(self.native.path) if self.native is not None else None,
        }
        return meta, arrays

    @classmethod
    def load(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, Matrix],
        directory: Path,
        threads: int | None,
    ) -> TreeScorer:
        encoders = [arrays[f"encoder_{j}"] for j in range(int(meta["encoders"]))]
        onnx = (directory / TREES).read_bytes() if meta["trees"] else None
        scorer = cls(onnx, meta["order"], encoders, meta["constant"], threads)
        if meta.get("native"):
            scorer.native = load_native(directory / NATIVE, meta["native"], len(FEATURES), threads)
        return scorer


def load_native(path: Path, digest: str, width: int, threads: int | None) -> NativeTrees | None:
    """The saved native trees, or None (one log line: the ONNX trees serve) when the library is
    not the one saved (hash) or cannot be loaded on this machine."""
    try:
        if sha256(path) != digest:
            log.warning("%s is not the library saved with this model: using the ONNX trees", path)
            return None
        return NativeTrees(path, width, threads)
    except OSError as exc:
        log.warning("cannot load the native trees (%s): using the ONNX trees", exc)
        return None


@dataclass(kw_only=True)
class LinearScorer:
    """Imputer + scaler on numerics, imputer + one-hot on categories, then logistic regression,
    folded into one affine map (``fastpath`` reads the fitted steps into these arrays).

    Attributes:
        num_cols, fill, weights, intercept: numeric columns, their imputed values, their
            weights divided by the scale, and the intercept with the centring folded in.
        cat_cols, cat_fill, categories, cat_weights: categorical columns, the value imputed
            for missing ones, per column the one-hot categories and their weights.
    """

    kind: ClassVar[str] = "linear"
    num_cols: list[int]
    fill: Matrix
    weights: Matrix
    intercept: float
    cat_cols: list[int]
    cat_fill: float
    categories: list[Matrix]
    cat_weights: list[Matrix]

    def proba(self, X: Matrix) -> Matrix:  # noqa: N803
        numeric = X[:, self.num_cols]
        # column by column in a fixed order, not a matrix product or a row sum: their summation
        # order depends on the number of rows, so a flight's last bit would depend on the other
        # flights of its request
        filled = np.where(np.isnan(numeric), self.fill, numeric)
        raw = np.full(len(X), self.intercept)
        for j, weight in enumerate(self.weights.tolist()):
            raw += filled[:, j] * weight
        for col, cats, weights in zip(
            self.cat_cols, self.categories, self.cat_weights, strict=True
        ):
            code = encode(np.nan_to_num(X[:, col], nan=self.cat_fill), cats)
            known = ~np.isnan(code)
            raw = raw + np.where(known, weights[np.where(known, code, 0).astype(np.intp)], 0.0)
        return sigmoid(raw)

    def state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """Scalars (JSON) and arrays (npz) that ``load`` turns back into this scorer."""
        meta = {
            "num_cols": self.num_cols,
            "intercept": self.intercept,
            "cat_cols": self.cat_cols,
            "cat_fill": self.cat_fill,
        }
        arrays = {"fill": self.fill, "weights": self.weights}
        for j, (cats, weights) in enumerate(zip(self.categories, self.cat_weights, strict=True)):
            arrays[f"categories_{j}"], arrays[f"cat_weights_{j}"] = cats, weights
        return meta, arrays

    @classmethod
    def load(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, Matrix],
        directory: Path,
        threads: int | None,
    ) -> LinearScorer:
        n = len(meta["cat_cols"])
        return cls(
            num_cols=meta["num_cols"],
            fill=arrays["fill"],
            weights=arrays["weights"],
            intercept=meta["intercept"],
            cat_cols=meta["cat_cols"],
            cat_fill=meta["cat_fill"],
            categories=[arrays[f"categories_{j}"] for j in range(n)],
            cat_weights=[arrays[f"cat_weights_{j}"] for j in range(n)],
        )


def _by_code(codes: Mapping[Any, int]) -> list[Any]:
    """A value -> code table as the list of values in code order (codes are 0..n-1)."""
    return sorted(codes, key=codes.__getitem__)


SCORERS: dict[str, type[TreeScorer] | type[LinearScorer]] = {
    "trees": TreeScorer,
    "linear": LinearScorer,
}


class ServingModel:
    """Features plus a scorer: ``predict_records`` equals the Pipeline's probabilities.

    Safe for concurrent callers: the lookups are read-only, onnxruntime sessions may run
    concurrently and the one made later (for large inputs) is made under a lock.
    """

    def __init__(self, features: FeatureTable, scorer: TreeScorer | LinearScorer) -> None:
        self.features = features
        self.scorer = scorer

    @property
    def categories(self) -> Mapping[str, Mapping[Any, int]]:
        return self.features.categories

    def predict_records(self, records: Sequence[Record]) -> Matrix:
        """Probability that each flight (a mapping of ``Flight`` fields) arrives late."""
        if not records:
            return np.empty(0, dtype=np.float64)
        build = self.features.rows if len(records) <= SMALL_ROWS else self.features.columns
        return self.scorer.proba(build(records))

    def predict_columns(self, columns: Mapping[str, Any]) -> Matrix:
        """Probabilities for a mapping of column name -> values (a DataFrame), column-wise."""
        return self.scorer.proba(self.features.transform(columns))

    def save(self, directory: str | Path) -> None:
        """Write ``MANIFEST``, ``ARRAYS`` (and ``TREES`` when trees split) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta, arrays = self.scorer.state()
        tails = list(self.features.planes)
        manifest = {
            "format": FORMAT,
            "features": list(FEATURES),
            "scorer": self.scorer.kind,
            "categories": {c: _by_code(self.features.categories[c]) for c in CATEGORICAL},
            "history": self.features.history,
            "prior": self.features.prior,
            "unused": list(self.features.unused),
            "scorer_state": meta,
        }
        planes = np.asarray([self.features.planes[t] for t in tails], dtype=np.float64)
        arrays |= {
            "holidays": self.features.holidays,
            "plane_tails": np.asarray(tails, dtype=np.str_),
            "plane_values": planes.reshape(len(tails), len(PLANE)),
        }
        if isinstance(self.scorer, TreeScorer) and self.scorer.onnx is not None:
            (directory / TREES).write_bytes(self.scorer.onnx)
        if isinstance(self.scorer, TreeScorer) and self.scorer.native is not None:
            # a new file, renamed into place: a process that has the old one loaded keeps it
            partial = directory / f".{NATIVE}.tmp"
            partial.write_bytes(self.scorer.native.path.read_bytes())
            partial.replace(directory / NATIVE)
        with (directory / ARRAYS).open("wb") as out:
            np.savez(out, allow_pickle=False, **arrays)
        (directory / MANIFEST).write_text(json.dumps(manifest) + "\n", encoding="utf-8")

    @staticmethod
    def saved_in(directory: str | Path) -> bool:
        return (Path(directory) / MANIFEST).is_file()

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None) -> ServingModel:
        """Read a model written by ``save``.

        Args:
            directory: where ``save`` wrote it.
            threads: cores for large inputs (default: every core; the API's workers pass 1).

        Raises:
            ServingModelError: a missing or unreadable file, another format or feature list.
        """
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
            with np.load(directory / ARRAYS, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ServingModelError(f"{directory}: cannot read the serving model: {exc}") from exc
        if not isinstance(manifest, dict) or (
            manifest.get("format"),
            manifest.get("features"),
            manifest.get("scorer") in SCORERS,
        ) != (FORMAT, list(FEATURES), True):
            raise ServingModelError(
                f"{directory / MANIFEST}: not a serving model this code reads (format {FORMAT}, "
                f"scorers {sorted(SCORERS)}, features {list(FEATURES)})"
            )
        try:
            scorer = SCORERS[manifest["scorer"]].load(
                manifest["scorer_state"], arrays, directory, threads
            )
            tails, values = arrays["plane_tails"].tolist(), manifest["categories"]
            features = FeatureTable(
                categories={col: {v: i for i, v in enumerate(values[col])} for col in CATEGORICAL},
                planes=dict(zip(tails, map(tuple, arrays["plane_values"].tolist()), strict=True)),
                holidays=arrays["holidays"],
                history={name: dict(rates) for name, rates in manifest["history"].items()},
                prior=float(manifest["prior"]),
                unused=tuple(manifest["unused"]),
            )
        except Exception as exc:  # noqa: BLE001 - any damage (a file, a key, a type, onnxruntime)
            raise ServingModelError(f"{directory}: damaged serving model: {exc!r}") from exc
        return cls(features, scorer)
