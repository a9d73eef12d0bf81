"""One import name: the wheel and an editable install expose ``powerd`` only (issue 12, item 10).

The repository keeps its folders agent/ and probes/; ``powerd/agent`` and ``powerd/probes`` are
symlinks to them, which hatchling follows, so the wheel holds them as ``powerd.agent`` and
``powerd.probes``. Both installs go into fresh venvs (no pip, no system site-packages) with
``--no-deps``; a ``.pth`` line lends them this environment's site-packages for numpy and the other
dependencies (a path added by a .pth is not a site dir, so this environment's own editable powerd
is not active there). Builds use pip's build isolation, so hatchling comes from the package index.
"""

from __future__ import annotations

import json
import re
import site
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_IMPORT = re.compile(r"^\s*(from|import)\s+(agent|probes)\b", re.M)

# run in the fresh venv: what `powerd` resolves to, and every entry point loaded
PROBE = r"""
import importlib, importlib.metadata as md, importlib.util, json, sys
import powerd, powerd.agent.wire, powerd.agent.cli, powerd.probes.registry, powerd.client
import powerd.i18n
from powerd.client import PowerdClient
eps = md.distribution("powerd").entry_points
for ep in eps:
    ep.load()
print(json.dumps({
    "powerd": powerd.__file__,
    "wire": powerd.agent.wire.__file__,
    "registry": powerd.probes.registry.__file__,
    "client": powerd.client.__file__,
    "entry_points": sorted(ep.value for ep in eps),
    "top_agent": importlib.util.find_spec("agent") is not None,
    "top_probes": importlib.util.find_spec("probes") is not None,
    "ko": powerd.i18n.translations("ko").gettext("verdict"),
}))
"""


def _fresh_venv(tmp: Path) -> Path:
    """A venv without pip that borrows this environment's third-party packages."""
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(tmp)
    python = tmp / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _pip(*args: str | Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def _probe(python: Path, cwd: Path) -> dict[str, object]:
    r = subprocess.run(
        [python, "-I", "-c", PROBE],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out: dict[str, object] = json.loads(r.stdout)
    return out


def test_no_source_imports_the_old_top_level_names() -> None:
    offenders = []
    for folder in ("powerd", "agent", "probes", "tests", "bench", "scripts", "grafana"):
        for path in (ROOT / folder).rglob("*.py"):
            if folder == "powerd" and path.relative_to(ROOT).parts[1] in ("agent", "probes"):
                continue  # the symlinked folders, scanned under their own names
            for m in OLD_IMPORT.finditer(path.read_text("utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0).strip()}")
    assert offenders == []


def test_checkout_layout_links_agent_and_probes_under_powerd() -> None:
    for name in ("agent", "probes"):
        link = ROOT / "powerd" / name
        assert link.is_symlink(), f"powerd/{name} must be a symlink to ../{name}"
        assert link.resolve() == (ROOT / name).resolve()


@pytest.mark.slow
def test_wheel_has_one_top_level_name_and_imports_from_a_fresh_venv(tmp_path: Path) -> None:
    _pip("wheel", "--no-deps", "-w", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("powerd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        ep_file = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(ep_file).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"powerd"}
    assert len(set(names)) == len(names)
    for member in (
        "powerd/agent/wire.py",
        "powerd/agent/__main__.py",
        "powerd/probes/registry.py",
        "powerd/probes/sim/__init__.py",
        "powerd/client.py",
        "powerd/commands/measure.py",
        "powerd/locale/ko/LC_MESSAGES/powerd.mo",  # the report catalogue (powerd.i18n)
        # the live page and the vendored uPlot (MIT, with its licence): offline from the wheel
        "powerd/static/live.html",
        "powerd/static/live.js",
        "powerd/static/report-zoom.js",
        "powerd/static/uplot/uPlot.iife.min.js",
        "powerd/static/uplot/uPlot.min.css",
        "powerd/static/uplot/LICENSE",
    ):
        assert member in names
    targets = re.findall(r"=\s*([\w.]+):", entry_points)
    assert targets and all(t.startswith("powerd.") for t in targets), targets

    python = _fresh_venv(tmp_path / "venv")
    _pip("--python", python, "install", "--no-deps", wheel)
    got = _probe(python, tmp_path)
    site_dir = str(tmp_path / "venv")
    for key in ("powerd", "wire", "registry", "client"):
        assert str(got[key]).startswith(site_dir), (key, got[key])
    assert got["top_agent"] is False and got["top_probes"] is False
    assert got["ko"] == "판정"  # the compiled Korean catalogue ships in the wheel
    eps = got["entry_points"]
    assert (
        isinstance(eps, list)
        and "powerd.agent.cli:main" in eps
        and "powerd.probes.sim:family" in eps
    )


@pytest.mark.slow
def test_editable_install_imports_the_same_names(tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    _pip("--python", python, "install", "--no-deps", "-e", ROOT)
    got = _probe(python, tmp_path)
    assert Path(str(got["powerd"])).resolve() == ROOT / "powerd" / "__init__.py"
    assert Path(str(got["wire"])).resolve() == ROOT / "agent" / "wire.py"
    assert Path(str(got["registry"])).resolve() == ROOT / "probes" / "registry.py"
    assert Path(str(got["client"])).resolve() == ROOT / "powerd" / "client.py"
    eps = got["entry_points"]
    assert isinstance(eps, list) and all(str(e).startswith("powerd.") for e in eps), eps


@pytest.mark.slow
def test_wheel_built_from_the_sdist_has_the_same_files(tmp_path: Path) -> None:
    """An sdist must carry the real agent/ and probes/ folders (not one copy through a symlink),
    or a wheel built from it (python -m build, PyPI) would miss powerd.agent or powerd.probes."""
    _pip("install", "--target", tmp_path / "hatch", "hatchling")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))",
            tmp_path / "sdist",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path / "hatch"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with tarfile.open(tmp_path / "sdist" / r.stdout.strip().splitlines()[-1]) as tf:
        tf.extractall(tmp_path / "src", filter="data")
    (src,) = (tmp_path / "src").iterdir()
    wheels = {}
    for name, tree in (("sdist", src), ("checkout", ROOT)):
        _pip("wheel", "--no-deps", "-w", tmp_path / name, tree)
        (wheel,) = (tmp_path / name).glob("powerd-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            wheels[name] = {n for n in zf.namelist() if ".dist-info/" not in n}
    assert (
        "powerd/agent/wire.py" in wheels["sdist"] and "powerd/probes/registry.py" in wheels["sdist"]
    )
    assert wheels["sdist"] == wheels["checkout"]
