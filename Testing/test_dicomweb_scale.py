"""docs/scale.md shown working: one shared archive (Orthanc with its PostgreSQL index, reached
over DICOMweb), two browsers with their own local databases as its clients.

Given a PostgreSQL and an Orthanc keeping its index there, both started here on 127.0.0.1, when
one user sends a study with `send` (STOW-RS) and another finds it with `find` (QIDO-RS) and
brings it with `retrieve` (WADO-RS), then the second database holds it byte for byte in its
pixel data; after Orthanc restarts from the same PostgreSQL the study is still found.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import sampledata
from network_peers import OrthancPeer, free_port, have_orthanc

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
POSTGRESQL_INDEX = Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")


def _why_not() -> str | None:
    if not (have_orthanc() and DICOMWEB.exists()):
        return "Orthanc with its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb) not installed"
    if not POSTGRESQL_INDEX.exists():
        return "Orthanc's PostgreSQL plugin (apt-get install orthanc-postgresql) not installed"
    if not (POSTGRES_BIN / "postgres").exists():
        return f"PostgreSQL server binaries not found in {POSTGRES_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the PostgreSQL server as"
    return None


pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def postgresql():
    """A PostgreSQL cluster in a temporary folder on 127.0.0.1 (trust authentication), stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="dicombrowser-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(_as_postgres([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
    log = open(folder / "postgres.log", "wb")
    server = subprocess.Popen(_as_postgres([str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(port),
                                            "-h", "127.0.0.1", "-k", str(folder)]), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, timeout=10).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, (folder / "postgres.log").read_text()
            time.sleep(0.2)
        subprocess.run([str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "orthanc"], check=True, capture_output=True, timeout=60)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def shared_archive_config(pg_port: int) -> dict:
    return {"Plugins": [str(DICOMWEB), str(POSTGRESQL_INDEX)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "PostgreSQL": {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": pg_port,
                           "Database": "orthanc", "Username": "postgres", "Password": "", "Lock": False,
                           "EnableSsl": False}}


def test_two_browsers_share_an_orthanc_with_a_postgresql_index(postgresql, tmp_path, cli_runner):
    files = sampledata.write_series(tmp_path / "scan", count=8, rows=64, columns=64, patient_id="SHARED1",
                                    patient_name="Shared^Patient", modality="CT")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    alice, bob = tmp_path / "alice-db", tmp_path / "bob-db"
    archive_folder = tmp_path / "archive"
    with OrthancPeer(archive_folder, extra=shared_archive_config(postgresql)) as archive:
        url = f"{archive.url}/dicom-web"
        plugins = archive.rest("/plugins")
        assert "postgresql-index" in plugins, plugins
        for database in (alice, bob):
            assert cli_runner("node", "add", "archive", "--url", url, database=database).exit_code == 0
        assert cli_runner("import", str(tmp_path / "scan"), database=alice).exit_code == 0
        sent = cli_runner("send", "archive", study_uid, database=alice)
        assert sent.exit_code == 0 and "Sent 8 of 8" in sent.output, sent.output
    # the index lives in PostgreSQL: a new Orthanc on the same database and storage folder finds it
    with OrthancPeer(archive_folder, extra=shared_archive_config(postgresql)) as archive:
        url = f"{archive.url}/dicom-web"
        assert cli_runner("node", "add", "archive", "--url", url, database=bob).exit_code == 0
        found = json.loads(cli_runner("find", "archive", "--patient-id", "SHARED1", "--json", database=bob).output)
        assert [f["StudyInstanceUID"] for f in found] == [study_uid]
        got = cli_runner("retrieve", "archive", study_uid, database=bob)
        assert got.exit_code == 0 and "8 completed" in got.output, got.output
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    database = DICOMDatabase(bob)
    try:
        for original in files:
            stored = database.file_for_instance(str(pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID))
            assert stored and pydicom.dcmread(stored).PixelData == pydicom.dcmread(original).PixelData
    finally:
        database.close()
    assert not (archive_folder / "index" / "index").exists()  # no SQLite index: it was PostgreSQL's
