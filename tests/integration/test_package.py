"""``chalice package``: the deployment zip must load on Lambda.

Chalice picks manylinux wheels for the runtime of the interpreter it runs
under; a wheel built from source here (tag ``linux_x86_64``) would not load
on Lambda. Pillow, pyvips-binary and pi-heif carry native libraries (pi-heif:
libheif and libde265, decode only). Slow: Chalice downloads the wheels it
packages.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[2]
CHALICE = Path(sys.executable).with_name("chalice")


def copy_project(target: Path) -> Path:
    target.mkdir()
    for name in ("app.py", "requirements.txt"):
        shutil.copy(PROJECT / name, target / name)
    shutil.copytree(PROJECT / "chalicelib", target / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (target / ".chalice").mkdir()
    for path in (PROJECT / ".chalice").glob("*.json"):
        shutil.copy(path, target / ".chalice" / path.name)
    return target


def heic_fixture(path: Path) -> Path:
    """A 64x48 HEIC for the unpacked package to decode: written here by
    pillow-heif (a test dependency, not in the package)."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (64, 48), "teal")).save(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def unpack_and_import(zip_path: Path, target: Path) -> None:
    """Import the app, Pillow's native core, libvips and pi-heif's libheif from
    the unpacked zip alone, in an interpreter that sees neither site-packages
    nor this project, and process images (a JPEG with either engine, a HEIC)
    in an imaging worker started from there."""
    with zipfile.ZipFile(zip_path) as bundle:
        bundle.extractall(target)
    heic = heic_fixture(target.parent / "fixture.heic")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import app, PIL._imaging, pymysql;"
        "from PIL import Image; assert PIL._imaging.__file__.startswith(sys.argv[1]);"
        "import pyvips, _libvips; assert _libvips.__file__.startswith(sys.argv[1]);"
        "assert pyvips.API_mode and pyvips.Image.black(4, 4).avg() == 0;"
        "import pi_heif, _pi_heif; assert _pi_heif.__file__.startswith(sys.argv[1]);"
        "assert 'libde265' in str(pi_heif.libheif_info()['decoders']);"
        # The imaging worker starts from the package too, and decodes with either engine.
        "import io; from chalicelib import sandbox, imaging; data = io.BytesIO();"
        "Image.new('RGB', (64, 48)).save(data, 'JPEG');"
        "pool = sandbox.WorkerPool(1, 256 << 20).start();"
        "run = lambda e, d=data.getvalue(): sandbox.IsolatedImaging(pool).process(d,"
        " imaging.ImagingOptions(imaging.parse_renditions('t=32'), engine=e),"
        " sandbox.Budget(30, 'test')).renditions[0];"
        "assert run('pillow').height == run('vips').height == 24;"
        "heic = run('vips', open(sys.argv[2], 'rb').read());"
        "assert (heic.format, heic.width, heic.height) == ('JPEG', 32, 24); pool.close();"
        "print(sorted(app.app.handler_map)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(target), str(heic)],
        cwd=target, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def chalice_package(project: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return subprocess.run(
        [str(CHALICE), "package", "--pkg-format", "terraform", "--stage", "dev", str(out)],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_terraform_package_carries_manylinux_pillow(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    done = chalice_package(project, tmp_path / "out")
    assert done.returncode == 0, done.stderr

    with zipfile.ZipFile(tmp_path / "out" / "deployment.zip") as bundle:
        names = bundle.namelist()
        wheels = {
            name: bundle.read(name).decode() for name in names if name.endswith(".dist-info/WHEEL")
        }
    pillow = [text for name, text in wheels.items() if name.startswith("pillow-")]
    assert len(pillow) == 1
    tags = [line.split(": ", 1)[1] for line in pillow[0].splitlines() if line.startswith("Tag:")]
    assert tags and all(t.startswith("cp312-cp312-manylinux") for t in tags), tags
    for name, text in wheels.items():
        assert "linux_x86_64" not in text.replace("manylinux", ""), f"{name} was built here"
    assert any(n.startswith("pillow.libs/") for n in names)
    vips = [text for name, text in wheels.items() if name.startswith("pyvips_binary-")]
    assert len(vips) == 1 and "Tag: cp37-abi3-manylinux_2_28_x86_64" in vips[0]
    assert any(n.startswith("pyvips_binary.libs/libvips") for n in names)
    heif = [text for name, text in wheels.items() if name.startswith("pi_heif-")]
    assert len(heif) == 1
    tags = [line.split(": ", 1)[1] for line in heif[0].splitlines() if line.startswith("Tag:")]
    assert tags and all(t.startswith("cp312-cp312-manylinux") for t in tags), tags
    assert any(n.startswith("pi_heif.libs/libheif") for n in names)
    assert any(n.startswith("pi_heif.libs/libde265") for n in names)
    assert not any("x265" in n for n in names)  # decode only: no GPL encoder
    assert not any(n.startswith("pillow_heif") for n in names)  # a test dependency
    assert "app.py" in names and "chalicelib/pipeline.py" in names
    assert not any(n.startswith(("tests/", "devtools/", "bench/")) for n in names)
    assert "chalicelib/static/gallery.html" in names
    unpack_and_import(tmp_path / "out" / "deployment.zip", tmp_path / "unpacked")

    config = json.loads((tmp_path / "out" / "chalice.tf.json").read_text())
    functions = config["resource"]["aws_lambda_function"]
    assert {f["runtime"] for f in functions.values()} == {"python3.12"}
    notification = config["resource"]["aws_s3_bucket_notification"]
    assert "image-pipeline-dev-uploads" in json.dumps(notification)


@pytest.mark.slow
def test_package_refuses_a_stage_missing_settings(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    del config["stages"]["dev"]["environment_variables"]["SOURCE_BUCKET"]
    config_path.write_text(json.dumps(config))

    done = chalice_package(project, tmp_path / "out")

    assert done.returncode == 2
    assert "SOURCE_BUCKET is required" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_sqs_stage_has_no_bucket_to_lambda_notification(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["EVENTS_QUEUE"] = "upload-events"
    config_path.write_text(json.dumps(config))

    done = chalice_package(project, tmp_path / "out")
    assert done.returncode == 0, done.stderr

    resources = json.loads((tmp_path / "out" / "chalice.tf.json").read_text())["resource"]
    assert "aws_s3_bucket_notification" not in resources
    [mapping] = resources["aws_lambda_event_source_mapping"].values()
    assert "upload-events" in json.dumps(mapping)
    functions = resources["aws_lambda_function"]
    assert not any("handle_object_" in name for name in functions)


@pytest.mark.slow
def test_arm64_package_carries_aarch64_wheels(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["lambda_architecture"] = "arm64"
    config_path.write_text(json.dumps(config))

    done = chalice_package(project, tmp_path / "out")
    assert done.returncode == 0, done.stderr

    with zipfile.ZipFile(tmp_path / "out" / "deployment.zip") as bundle:
        wheel = next(
            bundle.read(n).decode()
            for n in bundle.namelist()
            if n.startswith("pillow-") and n.endswith(".dist-info/WHEEL")
        )
        natives = [n for n in bundle.namelist() if n.startswith("PIL/_imaging.c")]
        vips_wheel = next(
            bundle.read(n).decode()
            for n in bundle.namelist()
            if n.startswith("pyvips_binary-") and n.endswith(".dist-info/WHEEL")
        )
        heif_wheel = next(
            bundle.read(n).decode()
            for n in bundle.namelist()
            if n.startswith("pi_heif-") and n.endswith(".dist-info/WHEEL")
        )
        heif_natives = [n for n in bundle.namelist() if n.startswith("_pi_heif.c")]
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags and all(t.startswith("cp312-cp312-manylinux") and "aarch64" in t for t in tags)
    assert natives == ["PIL/_imaging.cpython-312-aarch64-linux-gnu.so"]
    assert "Tag: cp37-abi3-manylinux_2_28_aarch64" in vips_wheel
    heif_tags = [line for line in heif_wheel.splitlines() if line.startswith("Tag:")]
    assert heif_tags and all("cp312-cp312-manylinux" in t and "aarch64" in t for t in heif_tags)
    assert heif_natives == ["_pi_heif.cpython-312-aarch64-linux-gnu.so"]
    resources = json.loads((tmp_path / "out" / "chalice.tf.json").read_text())["resource"]
    assert {f["architectures"][0] for f in resources["aws_lambda_function"].values()} == {"arm64"}
