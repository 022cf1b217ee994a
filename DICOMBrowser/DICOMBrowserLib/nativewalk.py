"""The header scan's per-file work in C (native/headerwalk.c), loaded through ctypes.

Why: on long vendor headers (hundreds of elements in Philips and GE private sequences) the walk
of `headerscan` in Python was the largest single cost of a scan; the same walk in C reads the
same elements with the same rules. Once the walk was in C, building a Python object per kept
element and formatting it in Python cost more than the walk, so the plain values are formatted
there too, and the usual file (the 'DICM' prefix, a plain file meta in its first 8 KiB) is read
from its first byte in one call (`Walker.scan`); see docs/headerscan.md for the figures.

`headerscan` asks `walker(...)` for a `Walker` when it plans a scan; without the built library,
or with ``DICOMBROWSER_NATIVE=0`` in the environment, it gets None and walks in Python, which
stays the reference: Testing/test_headerscan_native.py compares both on every file it has.
Whatever the C side does not decide exactly as Python would (values outside the plain rules,
an unusual file meta) it leaves to Python, which decides it with its own code.

Build (Utilities/setup.sh does it after installing the package)::

    .venv/bin/python -m DICOMBrowser.DICOMBrowserLib.nativewalk --build

compiles native/headerwalk.c with ``cc -O2 -shared -fPIC`` into native/libheaderwalk.so, with the
SHA-256 of the source built in. A library built from another source (whatever the file times
say), or of another interface version, is not loaded, with a warning that says why.
"""
from __future__ import annotations

import array
import ctypes
import logging
import os
import shlex
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Iterable, Sequence

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "native" / "headerwalk.c"
LIBRARY = SOURCE.with_name("libheaderwalk" + (sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"))
VERSION = 4  # DBW_VERSION of the C source: a library of another version is not loaded
SWITCH = "DICOMBROWSER_NATIVE"  # "0": walk in Python

_ERROR, _TOO_SMALL, _DEFER = -1, -2, -3
# first sizes of the per-thread output buffers; they grow on demand (the text must hold a first read: dbw_scan)
_RECORDS, _VALUE_BYTES, _TEXT_BYTES, _SLOTS = 256, 1 << 16, 1 << 14, 128
_SHORT_VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST",
              "TM", "UI", "UL", "US")
_LONG_VRS = ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV")
_VRS = {int.from_bytes(vr.encode(), "little"): vr.encode() for vr in (*_SHORT_VRS, *_LONG_VRS)}


class WalkFailure(Exception):
    """The walk stopped: `broken` True for headerscan's _Broken, False for its _Fallback."""

    def __init__(self, message: str, broken: bool):
        super().__init__(message)
        self.broken = broken


class BuildError(RuntimeError):
    """The library cannot be built here (no compiler, or the compiler failed)."""


class NoCompiler(BuildError):
    """No C compiler on this machine: an expected set-up, in which scans walk in Python."""


def _failure(kind: int, a: int, b: int, c: int, size: int) -> Exception:
    """The exception of an error code of dbw_walk: the Python walker's own messages."""
    vr = b.to_bytes(2, "little") if kind in (9, 11) else b""
    messages = {
        1: (True, f"truncated element header at offset {a}"),
        2: (True, f"truncated: {b} bytes needed at offset {a}, file has {size}"),
        3: (True, f"short read at offset {a}"),
        4: (True, f"pixel data truncated: {b} bytes at offset {a}, file has {size}"),
        5: (True, f"element ({c >> 16:04x},{c & 0xFFFF:04x}) at offset {a} has length {b}, "
                  f"past the end of the file ({size} bytes)"),
        6: (True, f"element at offset {a} runs past the end of the file"),
        7: (True, f"bad encapsulated pixel data item at offset {a}"),
        8: (True, f"encapsulated pixel data fragment at offset {a} runs past the end of the file"),
        9: (False, f"invalid VR {vr!r} at offset {a}"),
        10: (False, f"item tag at top level at offset {a}"),
        11: (False, f"undefined length for VR {vr!r} at offset {a}"),
        12: (False, f"expected an item in a sequence at offset {a}"),
        13: (False, "sequences nested too deep"),
    }
    if kind == 14:
        return OSError(b, os.strerror(b))
    if kind not in messages:
        return RuntimeError(f"native walker: unknown error code {kind}")
    broken, message = messages[kind]
    return WalkFailure(message, broken)


# --- loading ---------------------------------------------------------------------------------------
def _source_sha256() -> str:
    """SHA-256 of native/headerwalk.c as built into the library (dbw_source_sha256)."""
    import hashlib  # once, when the library is loaded or built

    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


_library: ctypes.CDLL | None = None
_why_not: str | None = None  # set once loading was tried and failed
_lock = threading.Lock()


def _load() -> ctypes.CDLL | None:
    global _library, _why_not
    with _lock:
        if _library is not None or _why_not is not None:
            return _library
        if not LIBRARY.exists():
            _why_not = f"{LIBRARY.name} not built (python -m {__name__} --build)"
        else:
            try:
                library = ctypes.CDLL(str(LIBRARY))
                version = library.dbw_version()
                library.dbw_source_sha256.restype = ctypes.c_char_p
                built_from = library.dbw_source_sha256().decode("ascii", "replace")
            except (OSError, AttributeError) as exc:
                _why_not = f"cannot load {LIBRARY}: {exc}"
            else:
                rebuild = f"rebuild it (python -m {__name__} --build)"
                if version != VERSION:
                    _why_not = f"{LIBRARY.name} is version {version}, this code needs {VERSION}: {rebuild}"
                elif SOURCE.exists() and built_from != _source_sha256():
                    # the source's digest, not its time stamp: copies and checkouts keep or reset
                    # times, and a library built from other code must never run unnoticed
                    _why_not = f"{LIBRARY.name} was not built from this {SOURCE.name}: {rebuild}"
                else:
                    for function in (library.dbw_walk, library.dbw_scan):
                        function.restype = ctypes.c_int64
                        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]  # a _Plan, a _Call
                    _library = library
        if _why_not:
            # not built: a set-up without a compiler; anything else is a library to rebuild
            log = logger.debug if not LIBRARY.exists() else logger.warning
            log("Header scan walks in Python: %s", _why_not)
        return _library


def available() -> bool:
    """True when the built library loads (whatever $DICOMBROWSER_NATIVE says)."""
    return _load() is not None


def why_unavailable() -> str | None:
    """Why the library is not used, or None when it is."""
    if os.environ.get(SWITCH) == "0":
        return f"${SWITCH}=0"
    _load()
    return _why_not


def enabled() -> bool:
    """True when scans walk in C: the library loads and $DICOMBROWSER_NATIVE is not "0"."""
    return os.environ.get(SWITCH) != "0" and available()


# --- walking ---------------------------------------------------------------------------------------
_i64, _pointer = ctypes.c_int64, ctypes.c_void_p


class _Plan(ctypes.Structure):
    """headerwalk.c's DbwPlan."""

    _fields_ = [("keep", _pointer), ("keep_slot", _pointer), ("nkeep", _i64), ("private_groups", _pointer),
                ("ngroups", _i64), ("last_tag", _i64), ("ndata", _i64), ("implicit_vrs", _pointer)]


class _Call(ctypes.Structure):
    """headerwalk.c's DbwCall."""

    _fields_ = [("fd", _i64), ("size", _i64), ("first", ctypes.c_char_p), ("first_base", _i64), ("first_len", _i64),
                ("pos", _i64), ("implicit", _i64), ("with_values", _i64), ("records", _pointer),
                ("max_records", _i64), ("values", _pointer), ("values_cap", _i64), ("text", _pointer),
                ("text_cap", _i64), ("slots", _pointer), ("out", _pointer)]


class _Buffers(threading.local):
    """Output buffers of one thread, reused from file to file. A forked worker has its own copy
    (process memory), and each thread its own, as ctypes releases the GIL during the walk."""

    def __init__(self) -> None:
        self.call = _Call()
        self.call_address = ctypes.addressof(self.call)
        self.out = array.array("q", bytes(8 * 11))  # DbwCall.out: 11 slots
        self.call.out = self.out.buffer_info()[0]
        self.resize(_RECORDS, _VALUE_BYTES, _TEXT_BYTES, _SLOTS)
        self.count = 0  # records of the last walk_values

    def resize(self, records: int, value_bytes: int, text_bytes: int, slots: int) -> None:
        call = self.call
        self.max_records = call.max_records = records
        # five columns of `records` rows (see DbwCall); an array slices into ints fast
        self.records = array.array("q", bytes(8 * 5 * records))
        call.records = self.records.buffer_info()[0]
        call.values_cap = value_bytes
        self.values = ctypes.create_string_buffer(value_bytes)
        call.values = ctypes.addressof(self.values)
        self.values_view = memoryview(self.values).cast("B")
        call.text_cap = text_bytes
        self.text = ctypes.create_string_buffer(text_bytes)
        call.text = ctypes.addressof(self.text)
        self.text_view = memoryview(self.text)  # str(view[:n], "ascii") decodes without a copy to bytes
        self.max_slots = slots
        self.slots = array.array("i", bytes(4 * 3 * slots))
        call.slots = self.slots.buffer_info()[0]


_buffers = _Buffers()


class Walker:
    """The native walk for one tag plan (headerscan._TagPlan's keep, private_groups, last_tag, and
    for `walk_values` its data set tags and their dictionary VRs in implicit VR)."""

    def __init__(self, library: ctypes.CDLL, keep: Iterable[int], private_groups: Iterable[int], last_tag: int,
                 data_tags: Sequence[int] = (), implicit_vrs: Sequence[bytes | None] = ()):
        keep = sorted(keep)
        groups = sorted(private_groups)
        slot_of = {tag: i for i, tag in enumerate(data_tags)}
        if len(implicit_vrs) != len(data_tags):
            raise ValueError("one implicit VR (or None) per data set tag")
        self._walk = library.dbw_walk
        self._scan = library.dbw_scan
        # the arrays live as long as the Walker; the C side gets their addresses
        self._keep = array.array("I", keep or [0])
        self._keep_slot = array.array("i", [slot_of.get(tag, -1) for tag in keep] or [-1])
        self._groups = array.array("H", groups or [0])
        self._implicit_vrs = array.array("H", [int.from_bytes(vr, "little") if vr else 0 for vr in implicit_vrs]
                                         or [0])
        self._ndata = len(data_tags)
        self._plan = _Plan(self._keep.buffer_info()[0], self._keep_slot.buffer_info()[0], len(keep),
                           self._groups.buffer_info()[0], len(groups), last_tag, self._ndata,
                           self._implicit_vrs.buffer_info()[0])
        self._plan_address = ctypes.addressof(self._plan)

    def _call(self, function, fd: int, size: int, buf: bytes, base: int, pos: int, implicit: bool,
              with_values: bool) -> int:
        """dbw_walk or dbw_scan with this thread's buffers, grown until the outputs fit; raises on a
        walk error; _DEFER from dbw_scan."""
        b = _buffers
        if with_values and b.max_slots < self._ndata:
            b.resize(b.max_records, len(b.values), len(b.text), self._ndata)
        call = b.call
        call.fd, call.size, call.first, call.first_base, call.first_len, call.pos = fd, size, buf, base, len(buf), pos
        call.implicit, call.with_values = implicit, with_values
        while True:
            count = function(self._plan_address, b.call_address)
            if count != _TOO_SMALL:
                break
            out = b.out
            b.resize(max(b.max_records, out[4]), max(len(b.values), out[5]), max(len(b.text), out[6]), b.max_slots)
        if count < 0 and count != _DEFER:
            out = b.out
            raise _failure(out[4], out[5], out[6], out[7], size)
        return count

    def walk(self, fd: int, size: int, buf: bytes, base: int, pos: int,
             implicit: bool) -> tuple[dict[int, tuple], int | None, int | None]:
        """Walk the data set from `pos`; `buf` holds the file's bytes from offset `base`.

        Returns (raw, pixel offset, pixel length) as headerscan._walk does: raw is {tag: (VR
        bytes or None, value bytes, value offset)}. Raises WalkFailure or OSError."""
        count = self._call(self._walk, fd, size, buf, base, pos, implicit, False)
        return self._raw(count), *self._pixels()

    def walk_values(self, fd: int, size: int, buf: bytes, base: int, pos: int, implicit: bool
                    ) -> tuple[list[str], list[tuple[int, bytes | None, bytes]], int | None, int | None]:
        """Walk as `walk`, and format the values of the data set tags in C where the plain rules apply.

        Returns (texts, pending, pixel offset, pixel length): texts holds one string per data set
        tag, in the plan's order ('' when absent or pending); pending lists (index, VR bytes or
        None, value bytes) of the values the caller must convert (headerscan's rules). For those
        pydicom must convert, `last_raw()` gives the kept elements as `walk` does."""
        b = _buffers
        b.count = self._call(self._walk, fd, size, buf, base, pos, implicit, True)
        texts = str(b.text_view[:b.out[8]], "ascii").split("\0") if self._ndata else []
        return (texts, self._pending(), *self._pixels())

    def scan(self, fd: int, size: int) -> tuple | None:
        """The file meta, the walk and the values of the open file, for the usual file (the 'DICM'
        prefix, a plain file meta in the first 8 KiB; see dbw_scan); None for any other, which the
        caller reads itself. Else (texts, pending, pixel offset, pixel length, transfer syntax,
        Media Storage SOP Class UID, Media Storage SOP Instance UID, implicit) with the first four
        as `walk_values` gives them and the UIDs as headerscan's _uid does."""
        b = _buffers
        call = b.call
        if b.max_slots >= self._ndata:  # the usual call: set only what dbw_scan reads
            call.fd, call.size, call.with_values = fd, size, True
            count = self._scan(self._plan_address, b.call_address)
        else:
            count = _TOO_SMALL
        if count == _DEFER:
            return None
        if count < 0:  # outputs to grow, or an error to raise
            count = self._call(self._scan, fd, size, b"", 0, 0, False, True)
            if count == _DEFER:
                return None
        b.count = count
        out = b.out
        ts, media_class, media_instance, *texts = str(b.text_view[:out[8]], "ascii").split("\0")
        offset = out[0]
        return (texts, self._pending() if out[9] else [], None if offset < 0 else offset,
                None if offset < 0 else out[1], ts, media_class, media_instance, bool(out[10]))

    def _pending(self) -> list[tuple[int, bytes | None, bytes]]:
        """(index, VR bytes or None, value bytes) of the values the last walk left to Python."""
        b = _buffers
        pending = []
        if b.out[9]:
            slots, records, rows, view, vrs = b.slots, b.records, b.max_records, b.values_view, _VRS
            for k in range(self._ndata, self._ndata + 2 * b.out[9], 2):
                i, r = slots[k], slots[k + 1]
                value = view[records[3 * rows + r]:records[4 * rows + r]].tobytes()
                pending.append((i, vrs.get(records[rows + r]), value))
        return pending

    def last_raw(self) -> dict[int, tuple]:
        """The kept elements of this thread's last `walk_values` or `scan`, as `walk` gives them."""
        return self._raw(_buffers.count)

    @staticmethod
    def _raw(count: int) -> dict[int, tuple]:
        """{tag: (VR bytes or None, value bytes, value offset)} of this thread's last walk."""
        if not count:
            return {}
        b = _buffers
        values = ctypes.string_at(b.values, b.out[2])
        records, rows, vrs = b.records, b.max_records, _VRS
        # a later duplicate of a tag replaces the earlier value, as in the Python walk
        return {tag: (vrs.get(vr), values[start:end], offset) for tag, vr, offset, start, end in zip(
            records[:count], records[rows:rows + count], records[2 * rows:2 * rows + count],
            records[3 * rows:3 * rows + count], records[4 * rows:4 * rows + count])}

    @staticmethod
    def _pixels() -> tuple[int | None, int | None]:
        out = _buffers.out
        return (None, None) if out[0] < 0 else (out[0], out[1])


def walker(keep: Iterable[int], private_groups: Iterable[int], last_tag: int, data_tags: Sequence[int] = (),
           implicit_vrs: Sequence[bytes | None] = ()) -> Walker | None:
    """A Walker for these tags, or None when scans must walk in Python (not built, or switched off)."""
    if os.environ.get(SWITCH) == "0":
        return None
    library = _load()
    return Walker(library, keep, private_groups, last_tag, data_tags, implicit_vrs) if library is not None else None


# --- building --------------------------------------------------------------------------------------
def _compiler() -> list[str]:
    configured = shlex.split(sysconfig.get_config_var("CC") or "")
    for command in (configured, ["cc"]):
        if command and shutil.which(command[0]):
            return command
    raise NoCompiler("no C compiler found (cc; Debian: apt install gcc libc6-dev): "
                     "the header scan walks in Python")


def build(output: Path | str | None = None, flags: Iterable[str] = ("-O2",)) -> Path:
    """Compile native/headerwalk.c into `output` (default: LIBRARY, next to the source) with the
    compiler `flags`; the source's SHA-256 is built in, and the file is replaced atomically, so
    running scans keep the library they loaded. Raises BuildError."""
    import subprocess  # building is rare: a scan need not import these
    import tempfile

    target = Path(output) if output is not None else LIBRARY
    command = _compiler()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([*command, "-std=c99", *flags, "-shared", "-fPIC",
                               f'-DDBW_SOURCE_SHA256="{_source_sha256()}"', "-o", temporary, str(SOURCE)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"{' '.join(command)} failed on {SOURCE.name}: {done.stderr.strip()}")
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse  # the command line only

    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="compile the library next to its source")
    parser.add_argument("--output", help="with --build: where to write the library instead")
    parser.add_argument("--cflags", default="-O2", help="with --build: compiler flags (default -O2; the tests' "
                        "sanitizer run: '-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer')")
    args = parser.parse_args(argv)
    if args.build:
        try:
            print(f"built {build(args.output, shlex.split(args.cflags))}")
        except NoCompiler as exc:
            print(f"native header walker not built: {exc}", file=sys.stderr)
            return 0
        except BuildError as exc:  # a compiler that fails on our source is a bug to see, not a set-up
            print(f"native header walker not built: {exc}", file=sys.stderr)
            return 1
        return 0
    print("native header walker: " + ("used" if enabled() else f"not used ({why_unavailable()})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
