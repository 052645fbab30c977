"""Which key signs the model at release, and which one the deploy trusts.

``FLIGHTDELAY_SIGNING_KEY`` names the release's private key (PEM), or is ``sigstore`` for
keyless signing with the ambient OIDC identity (GitHub Actions, ``id-token: write``). Unset, the
key pair under ``$FLIGHTDELAY_SIGNING_DIR`` (default ``~/.config/flightdelay/signing``) signs,
made on first use (``private.pem``, readable by its owner only, and ``public.pem``). The deploy
trusts ``FLIGHTDELAY_SIGNING_PUBLIC_KEY``, else the keyless identity of
``FLIGHTDELAY_SIGNING_IDENTITY`` and ``FLIGHTDELAY_SIGNING_ISSUER``, else that folder's
``public.pem``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flightdelay.serving.signature import PUBLIC_KEY_ENV, trusted

log = logging.getLogger(__name__)

KEY_ENV, DIR_ENV, KEYLESS = "FLIGHTDELAY_SIGNING_KEY", "FLIGHTDELAY_SIGNING_DIR", "sigstore"


def key_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".config" / "flightdelay" / "signing")


def generate(folder: Path) -> Path:
    """A new P-256 key pair in ``folder``; returns the private key's path."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / "private.pem"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))  # fmt: skip
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "public.pem").write_bytes(public)
    log.info("made a signing key pair in %s (public key: public.pem)", folder)
    return private


def release_key() -> Path | None:
    """The private key that signs at release; None: keyless (Sigstore)."""
    given = os.environ.get(KEY_ENV, "")
    if given == KEYLESS:
        return None
    if given:
        return Path(given)
    private = key_dir() / "private.pem"
    return private if private.is_file() else generate(key_dir())


def trust() -> tuple[Path | None, tuple[str, str] | None, dict[str, str]]:
    """What the deploy verifies with (a public key, or a keyless identity), and the environment
    that tells the service the same; both None when nothing is configured."""
    key, identity = trusted()
    if key is None and identity is None and (key_dir() / "public.pem").is_file():
        key = key_dir() / "public.pem"
    return key, identity, ({PUBLIC_KEY_ENV: str(key)} if key is not None else {})
