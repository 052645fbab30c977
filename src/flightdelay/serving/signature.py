"""The model's signature: ``model.sig`` in the BentoML model's folder, over every file in it.

Release signs the folder with the ``model-signing`` package (an elliptic-curve key pair, or
Sigstore's keyless signing where an OIDC identity is at hand, as in GitHub Actions); the deploy
command and the service at start verify it, so a model changed after signing (one byte of the
Pipeline, of the compiled model, of its metadata) never serves. ``model-signing`` is imported on
use only: it pulls in Sigstore's client, which the service needs once, at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SIGNATURE = "model.sig"
#: the PEM public key of the release's key pair, for the service (and the deploy command)
PUBLIC_KEY_ENV = "FLIGHTDELAY_SIGNING_PUBLIC_KEY"
#: or, for keyless signatures: the signer's identity and its OIDC issuer
IDENTITY_ENV, ISSUER_ENV = "FLIGHTDELAY_SIGNING_IDENTITY", "FLIGHTDELAY_SIGNING_ISSUER"


class SignatureError(Exception):
    """A model without a valid signature: the message names the folder and what is wrong."""


def _hashing(model_dir: Path) -> Any:
    from model_signing import hashing  # noqa: PLC0415 - see the module docstring

    return hashing.Config().set_ignored_paths(paths=[model_dir / SIGNATURE])  # type: ignore[no-untyped-call]


def sign(model_dir: Path, private_key: Path | None) -> Path:
    """Sign every file of ``model_dir`` with ``private_key`` (PEM), or keyless with Sigstore
    when it is None; returns the signature's path."""
    from model_signing import signing  # noqa: PLC0415

    config = signing.Config().set_hashing_config(_hashing(model_dir))  # type: ignore[no-untyped-call]
    if private_key is None:
        config = config.use_sigstore_signer(use_ambient_credentials=True)
    else:
        config = config.use_elliptic_key_signer(private_key=private_key)
    config.sign(model_dir, model_dir / SIGNATURE)
    return model_dir / SIGNATURE


def verify(
    model_dir: Path, public_key: Path | None = None, identity: tuple[str, str] | None = None
) -> None:
    """Check ``model_dir`` against its signature, with a public key or a keyless identity
    (signer, OIDC issuer).

    Raises:
        SignatureError: no signature, or one that does not match the files or the key.
    """
    from model_signing import verifying  # noqa: PLC0415

    signature = model_dir / SIGNATURE
    if not signature.is_file():
        raise SignatureError(f"{model_dir}: the model is not signed (no {SIGNATURE}): refused")
    config = verifying.Config().set_hashing_config(_hashing(model_dir))  # type: ignore[no-untyped-call]
    if public_key is not None:
        config = config.use_elliptic_key_verifier(public_key=public_key)
    elif identity is not None:
        config = config.use_sigstore_verifier(identity=identity[0], oidc_issuer=identity[1])
    else:
        raise SignatureError("no key to verify the model's signature with")
    try:
        config.verify(model_dir, signature)
    except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError and crypto errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SignatureError(
            f"{model_dir}: the model does not match its signature ({first}): refused"
        ) from exc


def trusted(environ: dict[str, str] | None = None) -> tuple[Path | None, tuple[str, str] | None]:
    """The public key or keyless identity that the environment trusts (both None: neither)."""
    env = os.environ if environ is None else environ
    key = env.get(PUBLIC_KEY_ENV)
    identity = (
        (env[IDENTITY_ENV], env[ISSUER_ENV])
        if env.get(IDENTITY_ENV) and env.get(ISSUER_ENV)
        else None
    )
    return (Path(key) if key else None), identity
