"""Real DICOM peers for the network tests and the benchmark: DCMTK's storescp and an Orthanc.

Each peer runs on 127.0.0.1 on a free port, is waited for until it answers (C-ECHO for
storescp, REST /system for Orthanc), and is always stopped (context managers; terminate, then
kill after a grace period). DCMTK tools run with TCP_NODELAY=1 (Nagle off, see
networking/sockets.py). Orthanc runs from a generated JSON configuration in a temporary folder;
the Debian package's own service is never used.
"""
from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from DICOMBrowser.DICOMBrowserLib.networking.sockets import dcmtk_env

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (32768 on Linux by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's range for
    outgoing connections: a port the kernel handed out (bind to 0) could be taken, before the test
    bound it, by another process's outgoing connection (a CI run lost a listener's port that way
    while another process made thousands of HTTP requests). Not given twice in one process."""
    low = _ephemeral_low()
    candidates = range(max(1024, low - 12000), low)
    chooser = random.Random()
    for _ in range(500):
        port = chooser.choice(candidates)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_dcmtk() -> bool:
    return all(shutil.which(tool) for tool in ("storescp", "storescu", "echoscu"))


def have_orthanc() -> bool:
    return Path(ORTHANC).exists()


def _stop_process(process: subprocess.Popen, grace: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def echoscu(port: int, called_ae: str, calling_ae: str = "ECHOSCU", timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(["echoscu", "-to", str(int(timeout)), "-aet", calling_ae, "-aec", called_ae,
                           "127.0.0.1", str(port)], env=dcmtk_env(), capture_output=True, text=True,
                          timeout=timeout + 5)


def storescu(port: int, called_ae: str, paths: Iterable[str | Path], calling_ae: str = "STORESCU",
             extra: Iterable[str] = (), timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Send files/folders (recursively, non-DICOM files skipped) with DCMTK's storescu."""
    command = ["storescu", "-aet", calling_ae, "-aec", called_ae, "+sd", "+r", "-nh", *extra,
               "127.0.0.1", str(port), *[str(p) for p in paths]]
    return subprocess.run(command, env=dcmtk_env(), capture_output=True, text=True, timeout=timeout)


# storescu proposes uncompressed syntaxes unless told which compressed one to propose (one per run)
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr", "1.2.840.10008.1.2.1.99": "-xd",
}


@dataclass
class StoreSCP:
    """DCMTK storescp writing every received instance, bit-preserving, into `folder`."""

    folder: Path
    port: int = 0
    ae_title: str = "STORESCP"
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "StoreSCP":
        self.port = self.port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder.parent / f"storescp-{self.port}.log", "wb")
        # +xa: accept all transfer syntaxes (written as DICOM files with meta header)
        self.process = subprocess.Popen(
            ["storescp", "-aet", self.ae_title, "+xa", "-od", str(self.folder), *self.extra, str(self.port)],
            env=dcmtk_env(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"storescp exited with {self.process.returncode} on port {self.port}")
            if port_open(self.port) and echoscu(self.port, self.ae_title).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"storescp did not answer C-ECHO on port {self.port} within {timeout} s")

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)
            self.process = None
            self.log.close()

    def __enter__(self) -> "StoreSCP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class OrthancPeer:
    """An Orthanc in a temporary folder, with `modalities` ({name: (aet, port)}) registered on 127.0.0.1."""

    folder: Path
    ae_title: str = "ORTHANC"
    modalities: dict[str, tuple[str, int]] = field(default_factory=dict)
    dicom_port: int = 0
    http_port: int = 0
    check_called_aet: bool = True
    extra: dict = field(default_factory=dict)  # merged last into the configuration (plugins, DicomWeb, ...)
    process: subprocess.Popen | None = None

    def config(self) -> dict:
        return {
            "Name": "DICOMBrowserTest",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpCompressionEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": self.check_called_aet,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {
                name: {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowEcho": True, "AllowFind": True,
                       "AllowMove": True, "AllowGet": True, "AllowStore": True}
                for name, (aet, port) in self.modalities.items()},
            "DicomScuTimeout": 10,
            "DicomScpTimeout": 30,
            "SyncStorageArea": False,
            "StorageAccessOnFind": "Never",
            "TcpNoDelay": True,
            "SynchronousCMove": True,
            "SaveJobs": False,
            "OverwriteInstances": True,
            "StableAge": 1,
            "ConcurrentJobs": 2,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "MaximumPduLength": 1 << 16,
            **self.extra,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> "OrthancPeer":
        self.dicom_port = self.dicom_port or free_port()
        self.http_port = self.http_port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        self.log = open(self.folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(config_path)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=dcmtk_env(),  # Orthanc's DICOM side is DCMTK: Nagle off
                                        cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.folder / 'orthanc.log'}")
            try:
                self.rest("/system")
                if port_open(self.dicom_port):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url}/system within {timeout} s")

    def rest(self, path: str, data: bytes | None = None, method: str | None = None, timeout: float = 30.0):
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/dicom" if path == "/instances" else "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def upload(self, paths: Iterable[str | Path]) -> int:
        """POST files to /instances; returns how many Orthanc accepted (non-DICOM files are skipped)."""
        count = 0
        files: list[Path] = []
        for path in map(Path, paths):
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
        for path in files:
            try:
                self.rest("/instances", Path(path).read_bytes(), "POST")
                count += 1
            except urllib.error.HTTPError:
                pass  # not DICOM, or an instance Orthanc refuses
        return count

    def instance_uids(self) -> set[str]:
        uids = set()
        for instance_id in self.rest("/instances"):
            tags = self.rest(f"/instances/{instance_id}/simplified-tags")
            uids.add(tags["SOPInstanceUID"])
        return uids

    def find_series(self, series_uid: str) -> list[str]:
        query = json.dumps({"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}).encode()
        return self.rest("/tools/find", query, "POST")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process, grace=10.0)
            self.process = None
            self.log.close()

    def __enter__(self) -> "OrthancPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
