"""The model's signature (model-signing, an elliptic-curve key pair): a changed, added or
removed file, another key or no signature at all is refused, naming the folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flightdelay.ops import signing
from flightdelay.serving.signature import PUBLIC_KEY_ENV, SIGNATURE, SignatureError, sign, verify


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"\x80pickled pipeline")
    (folder / "serving.json").write_text('{"format": 2}')
    (folder / "model.yaml").write_text("metadata:\n  threshold: 0.3\n")
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private = signing.generate(tmp_path / "keys")
    return private, private.parent / "public.pem"


def test_a_signed_model_verifies(model: Path, keys: tuple[Path, Path]) -> None:
    assert sign(model, keys[0]) == model / SIGNATURE
    verify(model, keys[1])


@pytest.mark.parametrize("change", ["edit", "metadata", "add", "remove"])
def test_any_change_after_signing_is_refused(
    model: Path, keys: tuple[Path, Path], change: str
) -> None:
    sign(model, keys[0])
    if change == "edit":
        (model / "model.joblib").write_bytes(b"\x80pickled pipelinf")
    elif change == "metadata":
        (model / "model.yaml").write_text("metadata:\n  threshold: 0.9\n")
    elif change == "add":
        (model / "extra.py").write_text("import os")
    else:
        (model / "serving.json").unlink()
    with pytest.raises(SignatureError, match=rf"{model}: the model does not match its signature"):
        verify(model, keys[1])


def test_another_key_or_no_signature_is_refused(
    model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(SignatureError, match=r"the model is not signed \(no model.sig\): refused"):
        verify(model, keys[1])
    sign(model, keys[0])
    other = signing.generate(tmp_path / "other").parent / "public.pem"
    with pytest.raises(SignatureError, match="does not match its signature"):
        verify(model, other)
    with pytest.raises(SignatureError, match="no key to verify"):
        verify(model)


def test_the_release_key_pair_is_made_once_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.DIR_ENV, str(tmp_path / "signing"))
    monkeypatch.delenv(signing.KEY_ENV, raising=False)
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)
    first = signing.release_key()
    assert first == tmp_path / "signing" / "private.pem"
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    content = first.read_bytes()
    assert signing.release_key() == first and first.read_bytes() == content  # not made again
    key, identity, env = signing.trust()
    assert (key, identity) == (tmp_path / "signing" / "public.pem", None)
    assert env == {PUBLIC_KEY_ENV: str(key)}  # the service is told the same key
    monkeypatch.setenv(signing.KEY_ENV, "sigstore")
    assert signing.release_key() is None  # keyless
    monkeypatch.setenv(PUBLIC_KEY_ENV, "/elsewhere/public.pem")
    assert signing.trust()[0] == Path("/elsewhere/public.pem")
