"""What an import could not take is named with its reason: unreadable folders, files that are not
DICOM, damaged files, duplicates; and `import --copy` onto a disk that fills up keeps what fitted,
removes its partial copy, lists every file it could not copy, says how much was left undone, and
leaves a database folder that `db verify` finds clean.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def test_every_file_not_taken_is_named(cli_runner, series_factory, tmp_path):
    files = series_factory("input/series", count=3)
    root = files[0].parent.parent
    (root / "notes.txt").write_text("not DICOM")
    damaged = root / "damaged.dcm"
    damaged.write_bytes(files[0].read_bytes()[:400])  # preamble, file meta, then cut
    copy_folder = root / "copy"
    copy_folder.mkdir()
    shutil.copy(files[0], copy_folder / "same-instance.dcm")
    locked = root / "locked"
    locked.mkdir()
    shutil.copy(files[1], locked / "hidden.dcm")
    locked.chmod(0)
    try:
        result = cli_runner("import", str(root), "--json")
        if os.access(locked, os.R_OK):  # root reads any folder: the unreadable case cannot happen here
            locked_reported = None
        else:
            locked_reported = True
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    named = {os.path.basename(p): reason for p, reason in
             summary["errors"] + summary["skipped_files"] + summary["duplicate_files"]}
    assert "not a DICOM file" in named["notes.txt"]
    assert "damaged.dcm" in named
    assert "same-instance.dcm" in named or os.path.basename(str(files[0])) in named
    if locked_reported:
        assert any("cannot read folder" in reason and path.endswith("locked") for path, reason in summary["errors"])


def test_an_unreadable_folder_is_named_when_the_user_cannot_read_it(series_factory):
    """The import as a user who cannot read a folder (root reads every folder, so as root the
    command runs as `nobody` through setpriv): the folder is named with its reason, the rest imported."""
    import sys
    import tempfile

    command = [str(Path(sys.executable).with_name("dicombrowser"))]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is missing: no user to be refused")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    work = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/tmp"))
    try:
        work.chmod(0o777)
        files = series_factory("readable", count=2)
        source = work / "input"
        shutil.copytree(files[0].parent, source / "readable")
        locked = source / "locked"
        locked.mkdir()
        shutil.copy(files[0], locked / "hidden.dcm")
        for folder, _dirs, names in os.walk(source):
            os.chmod(folder, 0o755)
            for name in names:
                os.chmod(os.path.join(folder, name), 0o644)
        locked.chmod(0)
        database = work / "db"
        database.mkdir()
        database.chmod(0o777)
        result = subprocess.run([*command, "--database", str(database), "import", str(source), "--json"],
                                capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(work)})
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["indexed"] == 2
        assert any(path.endswith("locked") and "cannot read folder" in reason for path, reason in summary["errors"]), \
            summary["errors"]
    finally:
        if (work / "input" / "locked").exists():
            (work / "input" / "locked").chmod(0o755)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (the disk-full test runs where it can mount)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.parametrize("detection", ["foreseen", "at-commit"])
def test_import_copy_on_a_full_disk(cli_runner, series_factory, small_disk, monkeypatch, detection):
    """Given 40 files of ~130 kB and a 3 MB disk, when imported with --copy, then what fits is
    copied and indexed, the file the disk could not take is an error, the rest is listed as not
    done with its size, no partial copy or unindexed file is left, and once the disk is larger
    the same import finishes. 'foreseen': the import sees the disk is short and stores file by
    file; 'at-commit': it does not look, the batch fails (at a copy or at its commit) and is
    stored again file by file."""
    from DICOMBrowser.DICOMBrowserLib import indexer

    if detection == "at-commit":
        monkeypatch.setattr(indexer, "_disk_short", lambda database, batch: False)
    files = series_factory("big", count=40, rows=256, columns=256)  # ~130 kB each, 5 MB in all
    database = small_disk / "db"
    result = cli_runner("import", "--copy", "--json", str(files[0].parent), database=database)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert "no space left on device" in summary["stopped"]
    assert summary["indexed"] >= 5, "what fitted was not kept"
    assert len(summary["errors"]) == 1 and "no space left on device" in summary["errors"][0][1]
    assert summary["indexed"] + 1 + len(summary["not_done"]) == len(files)
    assert summary["not_done_bytes"] == sum(os.path.getsize(p) for p in summary["not_done"]) > 0
    assert not list((database / "dicom").rglob("*.part")), "partial copies left behind"
    copied = [p for p in (database / "dicom").rglob("*.dcm")]
    assert len(copied) == summary["indexed"]
    verify = cli_runner("db", "verify", "--json", database=database)
    assert verify.exit_code == 0, verify.output  # nothing unindexed, nothing partial: no repair needed

    again = cli_runner("import", "--copy", str(files[0].parent), database=database)  # still full
    assert again.exit_code == 1
    left = re.search(r"; (\d+) of 40 file\(s\) \([0-9.]+ MB\) were not imported", again.output)
    assert left and again.output.count("not done: ") == int(left.group(1)) > 0, again.output[-500:]

    grown = subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], capture_output=True, text=True)
    assert grown.returncode == 0, grown.stderr
    finished = cli_runner("import", "--copy", "--json", str(files[0].parent), database=database)
    assert finished.exit_code == 0, finished.output
    done = json.loads(finished.output[finished.output.index("{"):])
    assert not done["stopped"] and not done["errors"] and not done["not_done"]
    assert len(list((database / "dicom").rglob("*.dcm"))) == len(files)
    assert cli_runner("db", "verify", database=database).exit_code == 0
    print(f"{detection}: {summary['stopped']}; kept {summary['indexed']} of {len(files)}, 1 error, "
          f"{len(summary['not_done'])} not done ({summary['not_done_bytes'] / 1e6:.1f} MB)")


@pytest.mark.parametrize("mode", ["reference", "copy"])
def test_the_sound_copy_is_indexed_whatever_the_order(cli_runner, series_factory, tmp_path, mode):
    """Given a file and a copy that sorts before it with two bytes overwritten in a value (which
    the header scanner reads without complaint), when imported, then the sound file is indexed
    (copied) and the damaged copy is named with the reason, whether or not --copy is used."""
    import pydicom

    sound = series_factory("order/b", count=1)[0]
    cut = tmp_path / "order" / "a" / "damaged.dcm"
    cut.parent.mkdir(parents=True)
    data = bytearray(sound.read_bytes())
    at = pydicom.dcmread(sound, defer_size=1 << 30).get_item("SliceThickness", keep_deferred=True).value_tell
    data[at:at + 2] = b"\x01\x02"
    cut.write_bytes(bytes(data))
    result = cli_runner("import", str(tmp_path / "order"), "--json", *(["--copy"] if mode == "copy" else []))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    reasons = dict(summary["duplicate_files"])
    assert "breaks its VR's rules" in reasons[str(cut)]
    assert str(sound) in reasons[str(cut)]
    listing = json.loads(cli_runner("ls", "--level", "instances", "--json").output)
    assert len(listing) == 1
    indexed = Path(listing[0]["FilePath"])
    assert indexed.read_bytes() == sound.read_bytes()
    if mode == "reference":
        assert indexed == sound
    again = json.loads(cli_runner("import", str(tmp_path / "order"), "--json",
                                  *(["--copy"] if mode == "copy" else [])).output)
    assert again["indexed"] == again["updated"] == again["relinked"] == 0
    assert Path(json.loads(cli_runner("ls", "--level", "instances", "--json").output)[0]["FilePath"]
                ).read_bytes() == sound.read_bytes()
