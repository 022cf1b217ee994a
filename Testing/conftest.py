"""Shared fixtures: the real corpus, temporary databases, generated series, free ports.

One way to reach test data: the `corpus` fixture resolves ../shared/corpus (or
$DICOMBROWSER_CORPUS) and skips with a reason when it is absent; pydicom's bundled files come
through `pydicom_file`.
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _dcmtk_before_pynetdicoms_apps() -> None:
    """pynetdicom installs apps named storescu, storescp, echoscu, findscu... into the
    environment's scripts folder; with the venv activated they came first on PATH and the tests
    ran them instead of DCMTK's ("usage: storescu [options] addr port path"). That folder goes
    to the end of PATH for this process and its children."""
    scripts = sysconfig.get_path("scripts")
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if scripts in entries and os.path.exists(os.path.join(scripts, "storescu")):
        os.environ["PATH"] = os.pathsep.join([e for e in entries if e != scripts] + [scripts])


_dcmtk_before_pynetdicoms_apps()


def corpus_root() -> Path | None:
    env = os.environ.get("DICOMBROWSER_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "corpus")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real DICOM corpus (see its MANIFEST.md); tests skip when it is not there."""
    root = corpus_root()
    if root is None:
        pytest.skip("real DICOM corpus not found (../shared/corpus or $DICOMBROWSER_CORPUS)")
    return root


@pytest.fixture
def ge_files(corpus) -> list[Path]:
    """The real GE DWI series of the corpus (7 volumes x 2 oblique slices), in file-name order."""
    return sorted(corpus.joinpath("ge_dwi", "In", "01_Ax_DWI_TENSOR_R2").iterdir())


@pytest.fixture
def ge_copy(ge_files, tmp_path) -> list[Path]:
    """A private copy of the real GE DWI series, for tests that modify files."""
    import shutil

    folder = tmp_path / "ge"
    folder.mkdir()
    return [Path(shutil.copy(path, folder / path.name)) for path in ge_files]


@pytest.fixture
def pydicom_file():
    """Path of one of pydicom's bundled test files, by name."""
    from pydicom.data import get_testdata_file

    def get(name: str) -> Path:
        path = get_testdata_file(name)
        if path is None:
            pytest.skip(f"pydicom test file {name} not available")
        return Path(path)

    return get


@pytest.fixture
def database(tmp_path):
    """An empty database in a temporary folder, closed after the test."""
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    db = DICOMDatabase(tmp_path / "database")
    yield db
    db.close()


@pytest.fixture
def series_factory(tmp_path):
    """Write a generated series (DICOMBrowser.DICOMBrowserLib.sampledata.write_series) under tmp_path."""
    from DICOMBrowser.DICOMBrowserLib import sampledata

    counter = iter(range(1_000_000))

    def make(subfolder: str | None = None, **kwargs) -> list[Path]:
        folder = tmp_path / (subfolder or f"series{next(counter)}")
        return sampledata.write_series(folder, **kwargs)

    return make


@pytest.fixture
def free_port() -> int:
    """network_peers.free_port (below the kernel's range for outgoing connections)."""
    from network_peers import free_port as choose

    return choose()


@pytest.fixture
def cli_runner(tmp_path):
    """Run `dicombrowser --database <tmp> ARGS...` in-process; returns click's Result."""
    import click.testing

    from DICOMBrowser.DICOMBrowserLib.cli import cli

    db_dir = tmp_path / "cli-database"

    def run(*args: str, database: Path | None = None):
        return click.testing.CliRunner().invoke(cli, ["--database", str(database or db_dir), *args])

    run.database_dir = db_dir
    return run


@pytest.fixture(autouse=True)
def fastpath_as_the_test_chooses(request, monkeypatch):
    """A test marked fastpath_explicit chooses the fast DIMSE path or pynetdicom's own itself: it
    starts from the fast path on whatever DICOMBROWSER_FASTPATH says (the CI pass with it off
    leaves these out; run alone, they still check what they say)."""
    if request.node.get_closest_marker("fastpath_explicit") is not None:
        monkeypatch.delenv("DICOMBROWSER_FASTPATH", raising=False)


@pytest.fixture
def logic_for(cli_runner):
    """Make DICOMBrowserLogic objects on the CLI runner's database; all closed afterwards."""
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

    opened = []

    def make():
        logic = DICOMBrowserLogic(cli_runner.database_dir)
        opened.append(logic)
        return logic

    yield make
    for logic in opened:
        logic.close()
