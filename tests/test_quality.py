"""Project gates that run with the tests: lint, strict types, JS types and lint, packaging."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> str:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_ruff() -> None:
    run(sys.executable, "-m", "ruff", "check", ".")


def test_mypy_strict() -> None:
    run(sys.executable, "-m", "mypy")


def test_javascript_types_and_lint() -> None:
    npm = shutil.which("npm")
    assert npm, "node and npm are needed for the JS checks (tools/install-test-deps installs them)"
    assert (ROOT / "node_modules").is_dir(), "run `npm ci` first (tools/install-test-deps does)"
    run(npm, "run", "-s", "check")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "hatchling", "build", "-d", str(out))
    return out


def test_the_wheel_carries_the_widget_js_so_no_node_is_needed(built: Path) -> None:
    (wheel,) = built.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        bundle = (ROOT / "echo_widget/static/widget.js").read_bytes()
        assert archive.read("echo_widget/static/widget.js") == bundle
        css = archive.read("echo_widget/static/widget.css")
        assert css == (ROOT / "js/widget.css").read_bytes()
    assert "echo_widget/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_the_sdist_builds_a_complete_wheel(built: Path) -> None:
    (sdist,) = built.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"echo_widget/static/widget.js", "js/src/index.js", "js/widget.css",
            "pyproject.toml", "LICENSE", "echo_widget/widget.py"} <= names
