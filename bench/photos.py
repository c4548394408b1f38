"""A corpus of real photographs for the benchmarks: eight 2560x1600 JPEGs.

    .venv/bin/python -m bench.photos     # fetch them into the cache, list them

They are the photographic wallpapers of Debian's ``plasma-workspace-wallpapers``
(KDE Plasma 5.27.5, licensed LGPLv3 per each wallpaper's ``metadata.json``;
the package's other wallpapers are illustrations and renders, left out):
``usr/share/wallpapers/<Name>/contents/images/2560x1600.jpg``.

``corpus()`` returns ``(name, bytes of the JPEG)`` pairs, from, in order:

- ``$BENCH_PHOTOS``, if set: every ``*.jpg`` / ``*.jpeg`` in that directory,
  named by file stem, taken as they are (your own corpus; not verified);
- the cache ``bench/.photos/<Name>.jpg`` (git-ignored), each checked against
  the SHA-256 below;
- otherwise ``apt-get download plasma-workspace-wallpapers`` (no root
  install: the ``.deb`` is only unpacked, with ``dpkg-deb -x``, in a temporary
  directory), verified, copied into the cache.

The photos are never committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "plasma-workspace-wallpapers"
PACKAGE_VERSION = "4:5.27.5-2"
LICENSE = "LGPLv3"
MEMBER = "usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
# name -> SHA-256 of the package's 2560x1600.jpg (version PACKAGE_VERSION).
PHOTOS: dict[str, str] = {
    "BytheWater": "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f",
    "ColdRipple": "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f",
    "ColorfulCups": "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d",
    "EveningGlow": "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a",
    "FallenLeaf": "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de",
    "Grey": "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed",
    "OneStandsOut": "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd",
    "Path": "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8",
}
CACHE = Path(__file__).resolve().parent / ".photos"
ENV = "BENCH_PHOTOS"

HOW_TO_PROVIDE = (
    f"provide the photos yourself: either put the eight JPEGs of {PACKAGE} "
    f"{PACKAGE_VERSION} ({MEMBER.format(name='<Name>')} in the package, for <Name> in "
    f"{', '.join(PHOTOS)}) into bench/.photos/ as <Name>.jpg, or set {ENV} to a "
    "directory of JPEGs of your own (used as they are, unverified)"
)


class PhotosUnavailable(RuntimeError):
    """The corpus cannot be found or fetched; the message says how to provide it."""


def corpus(cache: Path = CACHE) -> list[tuple[str, bytes]]:
    """``(name, JPEG bytes)`` of every photo, in name order (see the module's docstring)."""
    own = os.environ.get(ENV)
    if own:
        return _own(Path(own))
    if not all(_verified(cache / f"{name}.jpg", digest) for name, digest in PHOTOS.items()):
        fetch(cache)
    return [(name, (cache / f"{name}.jpg").read_bytes()) for name in sorted(PHOTOS)]


def source() -> str:
    """Where ``corpus()`` takes the photos from, for a report."""
    if os.environ.get(ENV):
        return f"`${ENV}` ({len(_own(Path(os.environ[ENV])))} JPEGs, unverified)"
    return (
        f"Debian's `{PACKAGE}` {PACKAGE_VERSION} ({LICENSE}), the eight photographs, "
        "SHA-256 verified (`bench/photos.py`)"
    )


def fetch(cache: Path = CACHE) -> None:
    """Download the package, unpack it in a temporary directory, copy the photos into ``cache``."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise PhotosUnavailable(
            f"the photo corpus is not in {cache} and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not available to fetch it; {HOW_TO_PROVIDE}"
        )
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        where = Path(tmp)
        _run(["apt-get", "download", PACKAGE], where)
        debs = sorted(where.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise PhotosUnavailable(f"apt-get download {PACKAGE} wrote no .deb; {HOW_TO_PROVIDE}")
        _run(["dpkg-deb", "-x", str(debs[0]), str(where / "root")], where)
        found: dict[str, bytes] = {}
        for name, digest in PHOTOS.items():
            path = where / "root" / MEMBER.format(name=name)
            if not path.is_file():
                raise PhotosUnavailable(f"{debs[0].name} has no {MEMBER.format(name=name)}")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise PhotosUnavailable(
                    f"{name}'s photo in {debs[0].name} is not the one measured (SHA-256 "
                    f"differs; the corpus is version {PACKAGE_VERSION}); {HOW_TO_PROVIDE}"
                )
            found[name] = data
    cache.mkdir(parents=True, exist_ok=True)
    for name, data in found.items():
        partial = cache / f".{name}.jpg.partial"
        partial.write_bytes(data)
        partial.replace(cache / f"{name}.jpg")


def _run(command: list[str], cwd: Path) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise PhotosUnavailable(
            f"`{' '.join(command)}` failed (exit {exc.returncode}: {' / '.join(detail)}); "
            f"{HOW_TO_PROVIDE}"
        ) from exc


def _verified(path: Path, digest: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _own(directory: Path) -> list[tuple[str, bytes]]:
    if not directory.is_dir():
        raise PhotosUnavailable(f"{ENV}={directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise PhotosUnavailable(f"{ENV}={directory} holds no .jpg or .jpeg files")
    return [(p.stem, p.read_bytes()) for p in files]


def main() -> None:
    try:
        photos = corpus()
    except PhotosUnavailable as exc:
        sys.exit(f"bench.photos: {exc}")
    print(source())
    for name, data in photos:
        print(f"{name}: {len(data):,} bytes")


if __name__ == "__main__":
    main()
