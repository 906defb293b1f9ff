"""The detectron2 installer: index lookup and download over loopback HTTP, sha256 pinning, safe extraction, and a
real install (of an sdist rebuilt from the installed detectron2) that imports without slowfast_det."""

from __future__ import annotations

import hashlib
import http.server
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slowfast_det.detection import install as inst

REPO = Path(__file__).resolve().parents[1]
_V06_TRANSFORM = b"class T:\n    def __init__(self, src_rect, output_size, interp=Image.LINEAR, fill=0):\n"


def _fake_sdist(path: Path, escaping_member: bool = False) -> bytes:
    """A tar.gz shaped like the sdist, with an extra top-level file (and optionally a path-escaping member)."""
    members = {
        "pb1-detectron2-0.6/setup.py": b"raise SystemExit('must not be used')\n",
        "pb1-detectron2-0.6/detectron2/__init__.py": b"__version__ = '0.6'\n",
        "pb1-detectron2-0.6/detectron2/model_zoo/configs/Base-RCNN-FPN.yaml": b"MODEL: {}\n",
        "pb1-detectron2-0.6/detectron2/data/transforms/transform.py": _V06_TRANSFORM,
    }
    if escaping_member:
        members["pb1-detectron2-0.6/detectron2/../../escape.txt"] = b"outside\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture()
def index_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A loopback simple index (PEP 691 JSON) serving the fake sdist."""
    payload = _fake_sdist(tmp_path / inst.SDIST_FILENAME)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == f"/simple/{inst.SDIST_NAME}/":
                body = json.dumps({"files": [{"filename": inst.SDIST_FILENAME,
                                              "url": f"{base}/files/{inst.SDIST_FILENAME}"}]}).encode()
            elif self.path == f"/files/{inst.SDIST_FILENAME}":
                body = payload
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", payload
    finally:
        server.shutdown()


def test_index_lookup_and_download_over_loopback(index_server: tuple[str, bytes], tmp_path: Path) -> None:
    index, payload = index_server
    url = inst.find_sdist_url(index)
    dest = inst.download(url, tmp_path / "dl.tar.gz")
    assert dest.read_bytes() == payload
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(inst.InstallError, match="lists no file|could not read"):
        inst.find_sdist_url(index.replace("/simple", "/nothing"))


def test_sha256_pin_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / inst.SDIST_FILENAME
    payload = _fake_sdist(path)
    with pytest.raises(inst.InstallError, match="does not match the pinned"):
        inst.verify_sdist(path)
    inst.verify_sdist(path, expected=hashlib.sha256(payload).hexdigest())
    assert inst.sha256_of(path) == hashlib.sha256(payload).hexdigest()


def test_main_refuses_an_unpinned_sdist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / inst.SDIST_FILENAME
    _fake_sdist(path)
    from ava_tools.cli import run_cli
    from slowfast_det.tools import install_detectron2 as tool

    argv = ["--sdist", str(path), "--force", "--python", "/nonexistent/python"]
    assert run_cli(tool.main, tool.get_args_parser(), argv) == 2
    assert "does not match the pinned" in capsys.readouterr().err


def test_extraction_keeps_only_the_package(tmp_path: Path) -> None:
    path = tmp_path / "sdist.tar.gz"
    _fake_sdist(path)
    project = inst.extract_package(path, tmp_path / "out")
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert "detectron2/__init__.py" in files
    assert "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml" in files
    assert "pyproject.toml" in files and "setup.py" not in files
    assert 'name = "detectron2"' in (project / "pyproject.toml").read_text()
    assert f'description = "{inst.SUMMARY}"' in (project / "pyproject.toml").read_text()


def test_extraction_adds_the_standin_extension_and_the_pillow_fix(tmp_path: Path) -> None:
    path = tmp_path / "sdist.tar.gz"
    _fake_sdist(path)
    project = inst.extract_package(path, tmp_path / "out")
    assert (project / "detectron2" / "_C.py").read_bytes() == inst.STANDIN_SOURCE.read_bytes()
    transform = (project / "detectron2/data/transforms/transform.py").read_text()
    assert "interp=Image.BILINEAR, fill=0" in transform and "Image.LINEAR" not in transform
    assert inst.standin_version(inst.STANDIN_SOURCE.read_text()) is not None


def test_extraction_refuses_a_tree_without_the_v06_pillow_line(tmp_path: Path) -> None:
    path = tmp_path / "sdist.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("pb1-detectron2-0.6/detectron2/__init__.py")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(inst.InstallError, match=r"transform\.py .*exactly once; is it detectron2 v0\.6"):
        inst.extract_package(path, tmp_path / "out")


def test_extraction_refuses_path_escapes(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar.gz"
    _fake_sdist(path, escaping_member=True)
    with pytest.raises(inst.InstallError, match="unsafe archive member"):
        inst.extract_package(path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "escape.txt").exists()


def test_installed_detectron2_is_the_pinned_release() -> None:
    import importlib.metadata

    assert importlib.metadata.version("detectron2") == "0.6"


# --- a real install: the sdist's detectron2/ tree, rebuilt from the detectron2 installed in this environment ---


@pytest.fixture(scope="module")
def rebuilt_sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pb1-detectron2-0.6.tar.gz`` as PyPI has it, rebuilt offline from the installed detectron2's files.

    The installed copy may already be one made by this installer: its additions are undone (``_C.py`` left out,
    the Pillow line put back to v0.6's text), so the tree is detectron2 v0.6's own Python package.
    """
    try:
        dist = importlib.metadata.distribution("detectron2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("detectron2 is not installed")
    relative, v06_text, fixed_text = inst.PILLOW_FIX
    path = tmp_path_factory.mktemp("sdist") / inst.SDIST_FILENAME
    with tarfile.open(path, "w:gz") as tar:
        for file in dist.files or []:
            name = file.as_posix()
            if not name.startswith("detectron2/") or "__pycache__" in name or name == "detectron2/_C.py":
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            if name == relative:
                data = data.replace(fixed_text.encode(), v06_text.encode())
            info = tarfile.TarInfo(f"{inst.SDIST_NAME}-{inst.SDIST_VERSION}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def target_install(rebuilt_sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installer's real work (extract, add stand-in and fix, pip install, import check) into a folder."""
    target = tmp_path_factory.mktemp("site")
    where = inst.install(rebuilt_sdist, sys.executable, "http://127.0.0.1:9/unused", target=target,
                         sha256=inst.sha256_of(rebuilt_sdist))
    assert Path(where) == target / "detectron2" / "__init__.py"
    return target


def _run_without_slowfast_det(code: str, pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with only ``pythonpath`` in front of the environment (not this repository)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


_USER_SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
import detectron2, detectron2.data
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.layers import nms_rotated
from detectron2.layers.rotated_boxes import pairwise_iou_rotated
from detectron2.utils.collect_env import collect_env_info

assert detectron2.__file__.startswith({target!r}), detectron2.__file__
cfg = get_cfg()
cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
for call in (lambda: pairwise_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5)),
             lambda: nms_rotated(torch.zeros(1, 5), torch.zeros(1), 0.5)):
    try:
        call()
    except RuntimeError as exc:
        print("OPERROR", type(exc).__name__, exc)
print("ENV", "none (Python-only detectron2 install" in collect_env_info())
print("SLOWFAST_DET", any(m.startswith("slowfast_det") for m in sys.modules))
"""


def test_installed_package_works_without_slowfast_det(target_install: Path, tmp_path: Path) -> None:
    """A user's own script: model zoo config, data package (Pillow fix), stand-in ops, collect_env."""
    result = _run_without_slowfast_det(_USER_SCRIPT.format(target=str(target_install)), target_install, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SLOWFAST_DET False" in out and "ENV True" in out
    errors = [line for line in out.splitlines() if line.startswith("OPERROR")]
    assert len(errors) == 2
    assert errors[0].startswith("OPERROR MissingDetectron2Op detectron2 C++ op 'box_iou_rotated' is not available")
    assert "nms_rotated" in errors[1]
    assert all("'Detectron2' section of the slowfast_det README" in e and "official detectron2" in e for e in errors)


def test_probe_tells_an_outdated_install_from_a_current_one(
    target_install: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(target_install))
    found = inst.installed_detectron2(sys.executable)
    assert found is not None and found["version"] == "0.6" and found["summary"] == inst.SUMMARY
    assert not inst.needs_upgrade(found)
    standin = target_install / "detectron2" / "_C.py"
    current = standin.read_text()
    try:
        # an older stand-in, then none at all (what the installer before this change left)
        standin.write_text(current.replace(f"STANDIN_VERSION = {inst.standin_version(current)}", "STANDIN_VERSION = 1"))
        assert inst.needs_upgrade(inst.installed_detectron2(sys.executable) or {})
        standin.unlink()
        assert inst.needs_upgrade(inst.installed_detectron2(sys.executable) or {})
    finally:
        standin.write_text(current)
    assert not inst.needs_upgrade({"version": "0.6", "summary": "Detectron2 is FAIR's ...", "standin": None})


@pytest.fixture(scope="module")
def v06_tree(rebuilt_sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """detectron2 v0.6 as the installer before this change left it: the sdist's tree, no ``_C``, Pillow line as is."""
    root = tmp_path_factory.mktemp("v06")
    prefix = f"{inst.SDIST_NAME}-{inst.SDIST_VERSION}/"
    with tarfile.open(rebuilt_sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix + "detectron2/")]
        for member in members:
            member.name = member.name[len(prefix):]
        tar.extractall(root, members=members, filter="data")
    return root


_COMPAT_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from slowfast_det.detection import compat
compat.patch()
import detectron2._C as C
from detectron2 import model_zoo
import detectron2.data, detectron2.engine
assert detectron2.__file__.startswith({tree!r}), detectron2.__file__
print("REAL", compat.has_real_extension(), getattr(C, "get_compiler_version")())
"""


def test_compat_serves_an_install_without_the_standin(v06_tree: Path, tmp_path: Path) -> None:
    assert not (v06_tree / "detectron2" / "_C.py").exists()
    code = _COMPAT_SCRIPT.format(repo=str(REPO), tree=str(v06_tree))
    code += "import slowfast_det.detection.ext_standin as s; assert sys.modules['detectron2._C'] is s\n"
    result = _run_without_slowfast_det(code, v06_tree, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "REAL False none (Python-only detectron2 install" in result.stdout


def test_compat_leaves_a_compiled_extension_alone(v06_tree: Path, tmp_path: Path) -> None:
    """A real compiled ``detectron2._C`` (a tiny C extension built here) is used, not the stand-in."""
    source = tmp_path / "ext.c"
    source.write_text(
        "#include <Python.h>\n"
        "static PyObject *v(PyObject *s, PyObject *a) { return PyUnicode_FromString(\"gcc test build\"); }\n"
        "static PyMethodDef m[] = {{\"get_compiler_version\", v, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};\n"
        "static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, \"_C\", NULL, -1, m};\n"
        "PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&d); }\n"
    )
    tree = tmp_path / "tree"
    (tree / "detectron2").mkdir(parents=True)
    for item in (v06_tree / "detectron2").iterdir():
        (tree / "detectron2" / item.name).symlink_to(item)
    so = tree / "detectron2" / f"_C{sysconfig.get_config_var('EXT_SUFFIX')}"
    cmd = ["cc", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(so)]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no C compiler to build a test extension: {exc}")
    result = _run_without_slowfast_det(_COMPAT_SCRIPT.format(repo=str(REPO), tree=str(tree)), tree, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "REAL True gcc test build" in result.stdout
