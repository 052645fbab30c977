"""Release: version and tags, the model import into BentoML, the Bento build and the OCI image.

Tags: the Bento is ``flight-delay:<semver>-<sha7>`` and the image carries ``flight-delay:<semver>``
and ``flight-delay:sha-<sha7>``. ``<semver>`` is ``[project].version`` of pyproject.toml and
``<sha7>`` the commit; a working tree with uncommitted changes gets ``-dirty`` appended to every
tag, so such a build can never pass for the commit it started from.

``-dirty`` sees Git-tracked files only, and the model is a DVC output: a Bento is built only from
outputs whose md5 is the one dvc.lock records for them (a model left over from another branch's
run is refused), and the image carries the OCI labels of its source, revision, version and time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from flightdelay.compile.compiler import compile_pipeline
from flightdelay.contract.names import BENTO_NAME, MODEL_FILE, MODEL_NAME
from flightdelay.core import git
from flightdelay.core.dvc import file_md5
from flightdelay.core.errors import StageError
from flightdelay.core.io import run_main
from flightdelay.core.params import load_params, params_hash
from flightdelay.model.store import load_model
from flightdelay.ops.model_card import write_model_card
from flightdelay.ops.sbom import write_sbom
from flightdelay.ops.signing import release_key
from flightdelay.serving.signature import SIGNATURE, sign

log = logging.getLogger(__name__)

#: the distributions the service imports (``flightdelay.serving`` and ``flightdelay.contract``):
#: the compiled model needs numpy and onnxruntime, the API BentoML and pydantic; plus the compiled
#: HTTP parser and event loop that uvicorn picks up when they are installed
SERVICE_ROOTS = (
    "bentoml", "httptools", "model-signing", "numpy", "onnxruntime", "pydantic", "pyopenssl",
    "uvloop",
)  # fmt: skip
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9a-z][0-9a-z.]*)?$")


@dataclass(frozen=True)
class Release:
    """What a build is made from: the project version and the commit."""

    version: str
    sha7: str
    dirty: bool = False

    def __post_init__(self) -> None:
        if not SEMVER.match(self.version):
            raise StageError(f"version {self.version!r} is not semver X.Y.Z[-prerelease]")
        if not re.fullmatch(r"[0-9a-f]{7}", self.sha7):
            raise StageError(f"git sha {self.sha7!r} is not 7 lowercase hex digits")

    @property
    def suffix(self) -> str:
        return "-dirty" if self.dirty else ""

    @property
    def bento_version(self) -> str:
        return f"{self.version}-{self.sha7}{self.suffix}"

    @property
    def bento_tag(self) -> str:
        return f"{BENTO_NAME}:{self.bento_version}"

    @property
    def image_tags(self) -> tuple[str, str]:
        """One image, two tags: the release and the commit."""
        return (
            f"{BENTO_NAME}:{self.version}{self.suffix}",
            f"{BENTO_NAME}:sha-{self.sha7}{self.suffix}",
        )

    def model_tag(self, digest: str) -> str:
        """The model's tag: the release plus the model file's digest (a retrain is a new tag)."""
        return f"{MODEL_NAME}:{self.bento_version}-{digest[:8]}"


def project_version(pyproject: str) -> str:
    """``[project].version`` of a pyproject.toml text."""
    try:
        version = tomllib.loads(pyproject)["project"]["version"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise StageError(f"pyproject.toml: no [project].version ({exc})") from exc
    return str(version)


def current_release(repo: Path) -> Release:
    found = git.state(repo)
    text = (repo / "pyproject.toml").read_text("utf-8")
    return Release(project_version(text), found.sha7, found.dirty)


def locked_md5s(lock: str) -> dict[str, str]:
    """``path -> md5`` of every stage's outputs in a dvc.lock text (metrics with cache: false too).

    Raises:
        StageError: the text is not a dvc.lock.
    """
    try:
        stages = yaml.safe_load(lock)["stages"]
        outs = [out for stage in stages.values() for out in stage.get("outs", [])]  # none: no key
        return {out["path"]: out["md5"] for out in outs}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise StageError(f"dvc.lock: not a DVC lock file ({exc!r})") from exc


def check_locked_outputs(repo: Path, outputs: Sequence[Path]) -> list[str]:
    """The md5 of each output, refusing any that is not the file dvc.lock records for it.

    ``-dirty`` sees Git-tracked files only; a DVC output left over from another branch's run (what
    ``dvc status`` reports as "changed outs") would otherwise be packed under this commit's tags.
    A repository without a dvc.lock has no pipeline record to hold the outputs to: a warning.

    Args:
        repo: the project root, where dvc.lock is.
        outputs: the files the release packs (relative to the current directory, or absolute).

    Returns:
        Each output's md5, in the order given.

    Raises:
        StageError: naming every output that is missing, differs from dvc.lock or is not in it.
    """
    root = repo.resolve()
    lock_path = root / "dvc.lock"
    locked = locked_md5s(lock_path.read_text("utf-8")) if lock_path.is_file() else None
    found: dict[str, str] = {}  # md5 by path relative to the repository
    problems: list[str] = []
    rels = []
    for output in outputs:
        path = output.resolve()
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        rels.append(rel)
        if not path.is_file():
            problems.append(f"{rel} is missing")
            continue
        found[rel] = file_md5(path)
        if locked is None:
            continue
        if rel not in locked:
            problems.append(f"{rel} is not an output in dvc.lock")
        elif locked[rel] != found[rel]:
            problems.append(f"{rel} has md5 {found[rel]}, dvc.lock records {locked[rel]}")
    if problems:
        raise StageError(
            "the DVC outputs are not this commit's: " + "; ".join(problems)
            + " (dvc checkout or dvc pull restores them, dvc repro rebuilds them)"
        )  # fmt: skip
    if locked is None:
        log.warning("no dvc.lock in %s: %s not checked against a pipeline run", root, sorted(found))
    return [found[rel] for rel in rels]


def requirements_from_lock(lock: str, roots: Iterable[str]) -> list[str]:
    """Pinned requirement lines for ``roots`` and everything they need, from a uv.lock text.

    Markers of the dependency edges are kept (e.g. ``colorama==… ; sys_platform == 'win32'``).

    Raises:
        StageError: when a root or a dependency is not in the lock file.
    """
    packages = {p["name"]: p for p in tomllib.loads(lock)["package"]}
    markers: dict[str, set[str]] = {}
    todo: list[tuple[str, str, tuple[str, ...]]] = [(name, "", ()) for name in roots]
    while todo:
        name, marker, extras = todo.pop()
        if name not in packages:
            raise StageError(f"uv.lock: no package {name!r}")
        seen = markers.setdefault(name, set())
        if marker in seen and not extras:
            continue
        seen.add(marker)
        package = packages[name]
        edges = list(package.get("dependencies", []))
        for extra in extras:
            edges += package.get("optional-dependencies", {}).get(extra, [])
        for dep in edges:
            child = " and ".join(f"({m})" for m in (marker, dep.get("marker", "")) if m)
            todo.append((dep["name"], child, tuple(dep.get("extra", ()))))
    lines = []
    for name in sorted(markers):
        pin = f"{name}=={packages[name]['version']}"
        conds = markers[name]
        lines.append(pin if "" in conds else f"{pin} ; {' or '.join(sorted(conds))}")
    return lines


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The test-set metrics of evaluate.json plus the dummy's ROC AUC, without the slices."""
    keep = {k: float(v) for k, v in metrics.items() if k.startswith("test.")}
    if "dummy.roc_auc" in metrics:
        keep["dummy.roc_auc"] = float(metrics["dummy.roc_auc"])
    return keep


def import_model(model_path: Path, params_path: Path, metrics_path: Path, release: Release) -> str:
    """Put models/model.joblib into the BentoML model store (idempotent); returns its tag."""
    import bentoml  # noqa: PLC0415 - BentoML stays at the edge
    from bentoml.exceptions import NotFound  # noqa: PLC0415

    model = load_model(model_path)  # a file that cannot be served fails here, not at serve time
    if not hasattr(model.named_steps.get("features"), "categories_"):
        raise StageError(f"{model_path}: the Pipeline has no fitted 'features' step")
    serving = compile_pipeline(model, native=True)  # ships the native trees where they build
    if serving is None:  # the service runs only the compiled form: no scikit-learn in the image
        raise StageError(
            f"{model_path}: the model cannot be compiled to a ServingModel (see above)"
        )
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    tag = release.model_tag(digest)
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        log.info("model %s already in the store", tag)
        if not (Path(stored.path) / SIGNATURE).is_file():
            sign(Path(stored.path), release_key())
        return tag
    params = load_params(params_path)
    try:
        metrics = json.loads(metrics_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise StageError(f"{metrics_path}: cannot read metrics: {exc}") from exc
    labels = {"git_sha": release.sha7, "version": release.version, "dirty": str(release.dirty)}
    metadata = {
        "threshold": params.evaluate.threshold,
        "metrics": headline(metrics),
        "params_hash": params_hash(params),
        "sha256": digest,
        "dvc_md5": file_md5(model_path),  # the model's hash in dvc.lock
    }
    with bentoml.models.create(tag, module="flightdelay", labels=labels, metadata=metadata) as out:
        shutil.copy2(model_path, out.path_of(MODEL_FILE))  # the reference, for audits
        serving.save(out.path)  # what the API loads
        write_model_card(Path(out.path), tag, params, metrics, params_path.parent / "dvc.yaml")
    # after the store wrote model.yaml: the signature covers the metadata (threshold) too
    sign(Path(bentoml.models.get(tag).path), release_key())
    log.info("imported %s as %s (signed)", model_path, tag)
    return tag


def build_bento(repo: Path, release: Release, model_tag: str, dvc_md5: str = "") -> str:
    """Build the Bento from bentofile.yaml (build context src/), pinning its Python packages.

    The packages are the service's imports and their dependencies at the versions of uv.lock, so
    the image runs what the tests ran. ``dvc_md5``, the model file's md5 as dvc.lock records it,
    is a label: the Bento names the pipeline output it serves.
    """
    import bentoml  # noqa: PLC0415

    config = yaml.safe_load((repo / "bentofile.yaml").read_text("utf-8"))
    packages = requirements_from_lock((repo / "uv.lock").read_text("utf-8"), SERVICE_ROOTS)
    log.info("bento: %d pinned packages from uv.lock, model %s", len(packages), model_tag)
    python = {**config.pop("python", {}), "packages": packages, "lock_packages": False}
    labels = {**config.pop("labels", {}), "git_sha": release.sha7, "version": release.version}
    if dvc_md5:
        labels["dvc_md5"] = dvc_md5
    if bentoml.bentos.list(release.bento_tag):
        log.info("replacing existing bento %s", release.bento_tag)
        bentoml.bentos.delete(release.bento_tag)
    os.environ["FLIGHTDELAY_MODEL_TAG"] = model_tag  # the service module reads it on import
    bento = bentoml.bentos.build(
        **config,
        python=python,
        labels=labels,
        models=[model_tag],
        version=release.bento_version,
        build_ctx=str(repo / "src"),
    )
    log.info("built bento %s", bento.tag)
    return str(bento.tag)


def container_backend(has_docker: bool, has_buildah: bool) -> str:
    """Docker when an engine answers, else buildah; neither is a clear error."""
    if has_docker:
        return "docker"
    if has_buildah:
        return "buildah"
    raise StageError("no container builder: install Docker (engine running) or buildah")


def docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False)  # noqa: S607
    return done.returncode == 0


def oci_labels(release: Release, revision: str, created: str, source: str = "") -> dict[str, str]:
    """The image's OCI labels (org.opencontainers.image.*): what it was built from, and when.

    Args:
        release: the version; a dirty tree's revision carries ``-dirty``, as its tags do.
        revision: the full commit SHA.
        created: the build time, RFC 3339.
        source: the repository's URL (left out when empty).
    """
    prefix = "org.opencontainers.image."
    labels = {
        f"{prefix}created": created,
        f"{prefix}revision": f"{revision}{release.suffix}",
        f"{prefix}version": release.version,
    }
    if source:
        labels[f"{prefix}source"] = source
    return labels


def build_time() -> str:
    """Now in UTC, RFC 3339; ``SOURCE_DATE_EPOCH`` fixes it for a reproducible build."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def containerize_command(
    release: Release, backend: str, labels: Mapping[str, str], containerfile: Path, context: Path
) -> list[str]:
    """The image build: ``docker build`` or ``buildah build`` of ``containerfile`` in
    ``context``, both tags, the labels as ``--label KEY=VALUE``."""
    cmd = ["docker", "build"] if backend == "docker" else ["buildah", "build", "--layers"]
    cmd += ["-f", str(containerfile)]
    for tag in release.image_tags:
        cmd += ["-t", tag]
    for key, value in sorted(labels.items()):
        cmd += ["--label", f"{key}={value}"]
    return [*cmd, str(context)]


def export_context(tag: str, dest: Path) -> Path:
    """The Bento ``tag`` with its models, unpacked into ``dest`` (``bentoml export``): the build
    context of the image."""
    import bentoml  # noqa: PLC0415

    archive = dest.parent / f"{dest.name}.bento"
    bentoml.bentos.export_bento(tag, str(archive))
    with tarfile.open(archive) as packed:
        packed.extractall(dest, filter="data")
    archive.unlink()
    return dest


def containerize(
    release: Release, labels: Mapping[str, str], containerfile: Path
) -> tuple[str, ...]:
    """Build the release's Bento into one image with both tags and ``labels`` from
    ``containerfile`` (deploy/Containerfile)."""
    backend = container_backend(docker_running(), shutil.which("buildah") is not None)
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}  # buildah: OCI runtimes fail here
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flightdelay-image-") as tmp:
        context = export_context(release.bento_tag, Path(tmp) / "context")
        cmd = containerize_command(release, backend, labels, containerfile.resolve(), context)
        log.info("%s", " ".join(cmd))
        done = subprocess.run(cmd, env=env, check=False)  # noqa: S603 - fixed command
    if done.returncode != 0:
        raise StageError(f"{' '.join(cmd[:2])} failed with status {done.returncode}")
    log.info(
        "image %s built in %.0f s", ", ".join(release.image_tags), time.perf_counter() - started
    )
    return release.image_tags


def _bento_dir(tag: str) -> Path:
    import bentoml  # noqa: PLC0415 - BentoML stays at the edge

    return Path(bentoml.bentos.get(tag).path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flightdelay bento", description=__doc__)
    parser.add_argument(
        "action",
        nargs="?",
        default="bento",
        choices=["bento", "container", "tags", "sbom"],
        help="bento: import the model and build the Bento (default); container: the OCI image; "
        "tags: print the tags of this commit as JSON; sbom: write the CycloneDX SBOM into this "
        "commit's Bento and print its path",
    )
    parser.add_argument("--repo", type=Path, default=Path(), help="project root (Git work tree)")
    parser.add_argument("--model", type=Path, help="bento: the fitted model file")
    parser.add_argument("--params", type=Path, help="bento: params.yaml (threshold, params hash)")
    parser.add_argument("--metrics", type=Path, help="bento: evaluate.json (headline metrics)")
    parser.add_argument("--source", default="", help="container: the repository URL (OCI label)")
    args = parser.parse_args(argv)

    def body() -> None:
        release = current_release(args.repo)
        log.info("release %s (bento %s)", release.version, release.bento_tag)
        if args.action == "tags":
            tags = {"bento": release.bento_tag, "images": list(release.image_tags)}
            os.write(1, (json.dumps(tags) + "\n").encode())
        elif args.action == "bento":
            if not (args.model and args.params and args.metrics):
                raise StageError("bento needs --model, --params and --metrics")
            model_md5, _ = check_locked_outputs(args.repo, [args.model, args.metrics])
            model_tag = import_model(args.model, args.params, args.metrics, release)
            tag = build_bento(args.repo.resolve(), release, model_tag, model_md5)
            write_sbom(_bento_dir(tag), args.repo / "pyproject.toml")
        elif args.action == "sbom":
            path = write_sbom(_bento_dir(release.bento_tag), args.repo / "pyproject.toml")
            os.write(1, f"{path}\n".encode())
        else:
            revision = git.state(args.repo).sha
            labels = oci_labels(release, revision, build_time(), args.source)
            containerize(release, labels, args.repo / "deploy" / "Containerfile")

    return run_main("release", body)


if __name__ == "__main__":
    raise SystemExit(main())
