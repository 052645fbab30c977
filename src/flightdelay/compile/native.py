"""The gradient-boosted trees compiled to native code, for bulk scoring.

onnxruntime's TreeEnsemble walks the 300 trees at about the speed of scikit-learn's own
predictor; the same trees written out as C and compiled run several times faster. treelite
imports the fitted ``HistGradientBoostingClassifier`` (categorical splits and missing values
included), tl2cgen writes its C code, and the system's C compiler (``$CC``, else ``cc``) builds a
shared library with one extra entry point, ``predict_dense``, that scores a row-major float64
matrix (NaN: missing) in one call, tree-major over blocks of rows (``BLOCK``).
``serving.runtime.NativeTrees`` loads it with ctypes alone, so the API image needs neither
treelite nor a compiler: release ships the built library in the BentoML model.

Libraries are cached by the hash of the trees (treelite's serialized model) under
``$FLIGHTDELAY_NATIVE_CACHE`` (default ``~/.cache/flightdelay/native``): the first use of a model
compiles it (seconds), later ones load it. Where treelite, tl2cgen or a compiler is missing,
``build`` says so in one log line and returns None, and the caller keeps the ONNX trees.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sklearn.ensemble import HistGradientBoostingClassifier

from flightdelay.serving.runtime import cores

log = logging.getLogger(__name__)

CACHE_ENV = "FLIGHTDELAY_NATIVE_CACHE"
#: tl2cgen splits the trees into this many functions (``predict_unit<i>``, about 10 trees each)
UNITS = 30
#: rows scored together: each unit's trees run over the whole block before the next unit's, so
#: their code stays in the instruction cache (1.6x the rows/s of tl2cgen's row-by-row
#: ``predict`` on the 300 trees here); each row's sum is still taken tree by tree in tl2cgen's
#: order, so the result is the same to the last bit
BLOCK = 512
#: the batch entry point added to tl2cgen's code: raw scores (the margin) of a dense matrix
BATCH_C = r"""
#include "header.h"

typedef void (*unit_fn)(union Entry*, double*);
static const unit_fn UNITS[] = {@UNITS@};

void predict_dense(const double* X, long n, long d, double* out) {
  const long block = @BLOCK@;
  const int units = (int)(sizeof(UNITS) / sizeof(UNITS[0]));
  union Entry* rows = (union Entry*)malloc(sizeof(union Entry) * (size_t)(block * d));
  for (long start = 0; start < n; start += block) {
    long m = n - start < block ? n - start : block;
    for (long i = 0; i < m; ++i) {
      const double* x = X + (start + i) * d;
      union Entry* row = rows + i * d;
      for (long j = 0; j < d; ++j) {
        if (isnan(x[j])) { row[j].missing = -1; } else { row[j].fvalue = x[j]; }
      }
      out[start + i] = 0.0;
    }
    for (int u = 0; u < units; ++u) {
      for (long i = 0; i < m; ++i) { UNITS[u](rows + i * d, out + start + i); }
    }
    for (long i = 0; i < m; ++i) { out[start + i] += @BASE@; }
  }
  free(rows);
}
"""
#: the part of the cache key that is this code's, not the model's: a new kernel, new libraries
KERNEL = f"tree-major-v1-{UNITS}-{BLOCK}"


def batch_source(main_c: str, units: int) -> str:
    """``BATCH_C`` for tl2cgen's ``main.c`` (its base score, written as tl2cgen wrote it)."""
    found = re.search(r"Apply base_scores\s+result\[0\] \+= ([^;]+);", main_c)
    if found is None:
        raise ValueError("tl2cgen's main.c has no base score line: another tl2cgen layout")
    names = ", ".join(f"predict_unit{i}" for i in range(units))
    return (
        BATCH_C.replace("@UNITS@", names)
        .replace("@BLOCK@", str(BLOCK))
        .replace("@BASE@", found.group(1))
    )


_FLAGS = ("-O2", "-fPIC", "-std=c99", "-pipe")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flightdelay" / "native")


def _compile(source: Path, cc: str) -> Path:
    obj = source.with_suffix(".o")
    cmd = [cc, *_FLAGS, "-c", str(source), "-o", str(obj)]  # our files, the user's compiler
    subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: S603 - our sources, $CC
    return obj


def build(clf: HistGradientBoostingClassifier, cache: Path | None = None) -> Path | None:
    """The shared library of ``clf``'s trees (built, or found in the cache), or None (logged)
    when this machine cannot build it."""
    cc = os.environ.get("CC") or "cc"
    try:
        import tl2cgen  # noqa: PLC0415 - build time only
        import treelite  # noqa: PLC0415
    except ImportError as exc:
        log.info("no native trees (%s): scoring with the ONNX trees", exc)
        return None
    if shutil.which(cc) is None:
        log.info("no native trees (no C compiler %r on PATH): scoring with the ONNX trees", cc)
        return None
    model = treelite.sklearn.import_model(clf)
    digest = hashlib.sha256(KERNEL.encode() + model.serialize_bytes()).hexdigest()[:20]
    library = (cache or cache_dir()) / f"trees-{digest}.so"
    if library.is_file():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flightdelay-native-") as tmp:
        tl2cgen.generate_c_code(model, dirpath=tmp, params={"parallel_comp": UNITS})
        units = len(list(Path(tmp).glob("tu*.c")))  # fewer when there are fewer trees
        main_c = (Path(tmp) / "main.c").read_text("utf-8")
        (Path(tmp) / "batch.c").write_text(batch_source(main_c, units), encoding="utf-8")
        sources = sorted(Path(tmp).glob("*.c"))
        try:
            with ThreadPoolExecutor(cores(None)) as pool:
                objects = list(pool.map(lambda s: _compile(s, cc), sources))
            partial = Path(tmp) / "trees.so"
            link = [cc, "-shared", "-o", str(partial), *map(str, objects), "-lm"]
            subprocess.run(link, check=True, capture_output=True, text=True)  # noqa: S603 - our objects
        except subprocess.CalledProcessError as exc:
            log.warning("no native trees (%s failed: %s): scoring with the ONNX trees",
                        cc, (exc.stderr or "").strip()[-500:])  # fmt: skip
            return None
        shutil.move(str(partial), library.with_suffix(".tmp"))
        library.with_suffix(".tmp").replace(library)  # atomic: a reader never sees half a file
    log.info("native trees built: %s", library)
    return library
