"""Importing pydicom and numpy as a converter wants them.

pydicom imports `requests` (and urllib3) only to download its own test files, and uses urllib
when requests is missing; `tqdm` only for that download's progress bar. Those imports are 70-90 ms
of CPU in every process that reads DICOM. numpy's huge page advice makes some large allocations
stall (`import_numpy`). `convert` and `load` call `import_pydicom` first (docs/convert.md).

pydicom 3.0 also imports, at `import pydicom`, every pixel codec package it can use: gdcm (~36 ms),
Pillow (~11 ms), pylibjpeg with its entry-point scan (~13 ms), openjpeg, libjpeg, rle, jpeg_ls
(~6 ms). A folder of uncompressed files needs none of them. Hidden for good they would make
compressed files undecodable, so `import_pydicom` defers each to the first time it is needed,
from when on pydicom is in the state a plain `import pydicom` leaves it in. A process that only
calls `import_pydicom` takes 0.23 s instead of 0.35 s (wall, best of 5); `convert` of the
980-file benchmark folder 0.69 s instead of 0.75 s (best of 13 alternating runs on a busy 2-core
machine; medians 0.86 and 0.91 s). A compressed folder costs the same as before: each worker
imports the codecs its series need. pydicom reaches the codecs three ways:

* its decoders and encoders (`get_decoder(uid)`, `get_encoder(uid)`: every `pixel_array`,
  `iter_pixels`, `decompress`, `compress` goes through one) register plugins from the modules in
  PLUGIN_MODULES, which import the codec packages. While pydicom imports, a stand-in answers for
  each of those modules, so every registration is recorded, in pydicom's order, and nothing is
  imported (hiding the packages instead would leave the modules believing them missing, and
  split each coder's plugins into two tables, losing their order). The first read of a coder's
  plugin tables (`_available`, `_unavailable`: every decode and encode, `is_available`,
  `available_plugins`, `missing_dependencies`, `add_plugin`, ... reads them) replays its
  registrations through pydicom's own `add_plugin`, which imports the real modules and decides,
  as at import, which plugins are available. Only that coder's codecs load: decoding RLE imports
  pylibjpeg and rle, not gdcm. The trigger is the attribute itself, so no route is missed;
* the deprecated `pixel_data_handlers` backend (`V2_HANDLERS`): importlib.util.LazyLoader loads
  those modules, i.e. executes each at its first attribute access;
* `pydicom.pixels.processing` imports Pillow's ImageCms for `apply_icc_profile` and
  `create_icc_transform`: Pillow is hidden while it imports, and its HAVE_PIL flag imports Pillow
  the first time it is tested.

The stand-ins name pydicom 3.0's modules; another pydicom version is imported as before.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

#: what pydicom's test-file downloader imports when it can, and does without
HIDDEN = ("requests", "tqdm")

#: pydicom 3.0's pixel plugin modules, each registered by add_plugin (pixels/decoders/base.py
#: and pixels/encoders/base.py); the codec ones import gdcm, Pillow, pylibjpeg or jpeg_ls
PLUGIN_MODULES = tuple(
    [f"pydicom.pixels.decoders.{name}" for name in ("gdcm", "pillow", "pylibjpeg", "pyjpegls", "rle")]
    + [f"pydicom.pixels.encoders.{name}" for name in ("gdcm", "pylibjpeg", "pyjpegls", "native")])

#: pydicom 3.0's deprecated pixel data handlers that import a codec package (pydicom.config lists them)
V2_HANDLERS = tuple(f"pydicom.pixel_data_handlers.{name}_handler"
                    for name in ("gdcm", "pillow", "jpeg_ls", "pylibjpeg"))

#: the module that imports Pillow (for ICC profiles) at `import pydicom`
PROCESSING = "pydicom.pixels.processing"

#: coder -> (its class, its plugin registrations [(label, (module, function))]) until first used
_DEFERRED: dict[Any, tuple[type, list[tuple[str, tuple[str, str]]]]] = {}
_RESTORING = threading.RLock()


def import_numpy() -> None:
    """Import numpy without its transparent huge page advice and with one OpenBLAS thread,
    unless the user set NUMPY_MADVISE_HUGEPAGE / OPENBLAS_NUM_THREADS or numpy is imported already.

    numpy asks the kernel for huge pages on every large array (madvise). Where the kernel's
    defrag setting is "madvise" (Debian's and Ubuntu's default), a page fault in such an array
    may compact memory first: a 27 MB astype took 8 ms or 100-250 ms by chance. A converter
    allocates a few such arrays per series; without the advice each costs ~15 ms, every time
    (`convert` of the benchmark folder: 1.10-1.26 s against 1.25-1.38 s, alternating runs).
    The variables are inherited by worker processes, and numpy reads them once, at import."""
    if "numpy" in sys.modules:
        return
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    # numpy's OpenBLAS starts a thread per core at import, which spins for a while: ~0.1 s of
    # the other core's CPU in every `convert` or `load` (0.22 -> 0.12 s user time for the import
    # alone). A converter does no large linear algebra (3x3 and 4x4 matrices); a value the user
    # set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy  # noqa: F401


def import_pydicom() -> None:
    """Import pydicom with HIDDEN hidden for the duration and its pixel codecs deferred (module
    docstring), unless pydicom or one of HIDDEN is imported already (then nothing changes).
    Afterwards `import requests` works as usual (DICOMweb needs it); only pydicom's test-file
    downloader keeps using urllib, without a progress bar, in this process."""
    import_numpy()
    if "pydicom" in sys.modules or any(name in sys.modules for name in HIDDEN):
        return
    defer = _is_pydicom_3_0()
    # Pillow already imported (or blocked): processing gets it as a plain import would
    hidden = HIDDEN + (("PIL",) if defer and "PIL" not in sys.modules else ())
    stand_ins = {name: _PluginStandIn(name) for name in PLUGIN_MODULES} if defer else {}
    lazy_handlers = _LazyModules(V2_HANDLERS)
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    sys.modules.update(stand_ins)
    if defer:
        sys.meta_path.insert(0, lazy_handlers)
    try:
        import pydicom  # noqa: F401
    finally:
        if lazy_handlers in sys.meta_path:
            sys.meta_path.remove(lazy_handlers)
        for name in hidden:
            del sys.modules[name]
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
    if defer:
        _defer_coders()
        if "PIL" in hidden:
            _defer_pillow_check()


def _is_pydicom_3_0() -> bool:
    """True when the installed pydicom is a 3.0 release (pydicom looks its version up too)."""
    from importlib import metadata

    try:
        return metadata.version("pydicom").startswith("3.0.")
    except metadata.PackageNotFoundError:
        return False


@dataclass(frozen=True)
class _Registration:
    """Where a plugin's function lives, as pydicom's add_plugin was given it."""

    import_path: tuple[str, str]


class _PluginStandIn(types.ModuleType):
    """Imported by add_plugin, while pydicom imports, instead of a plugin module: the plugin
    reads as available and its function as a _Registration, so the coder keeps every plugin
    label in `_available` in pydicom's order."""

    def is_available(self, uid: str) -> bool:
        return True

    def __getattr__(self, name: str) -> _Registration:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Registration((self.__name__, name))


class _LazyModules:
    """A meta path finder loading the named modules with importlib.util.LazyLoader."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def _coders() -> list[Any]:
    """Every decoder and encoder pydicom made at import (one per transfer syntax)."""
    from pydicom.pixels import get_decoder, get_encoder
    from pydicom.uid import AllTransferSyntaxes

    found = []
    for uid in AllTransferSyntaxes:
        for get in (get_decoder, get_encoder):
            try:
                found.append(get(uid))
            except NotImplementedError:
                pass
    return found


def _defer_coders() -> None:
    """Give each coder whose plugins the stand-ins recorded a class whose plugin tables replay
    them at first access (restore_coder)."""
    for coder in _coders():
        tables = coder.__dict__
        if not any(isinstance(value, _Registration) for value in tables["_available"].values()):
            continue
        registrations = [(label, value.import_path if isinstance(value, _Registration)
                          else (value.__module__, value.__name__))
                         for label, value in tables["_available"].items()]
        _DEFERRED[coder] = (type(coder), registrations)
        coder.__class__ = _deferred_class(type(coder))


class _PluginTable:
    """A coder's `_available` or `_unavailable`, filled on first access (restore_coder)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, coder: Any, owner: type | None = None) -> Any:
        if coder is None:
            return self
        restore_coder(coder)
        return coder.__dict__[self.name]

    def __set__(self, coder: Any, value: Any) -> None:
        restore_coder(coder)
        coder.__dict__[self.name] = value


_DEFERRED_CLASSES: dict[type, type] = {}


def _deferred_class(cls: type) -> type:
    """cls, with plugin tables that restore the coder when read (same name, so messages match)."""
    if cls not in _DEFERRED_CLASSES:
        _DEFERRED_CLASSES[cls] = type(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
            "_available": _PluginTable("_available"), "_unavailable": _PluginTable("_unavailable")})
    return _DEFERRED_CLASSES[cls]


def restore_coder(coder: Any) -> None:
    """Register a deferred coder's plugins as `import pydicom` would have: the same labels, in
    the same order, through pydicom's add_plugin on a new coder of its class, whose tables it
    takes. Importing the plugin modules imports their codec packages. Nothing for other coders."""
    with _RESTORING:
        entry = _DEFERRED.pop(coder, None)
        if entry is None:
            return  # restored already (by another thread), or never deferred
        cls, registrations = entry
        try:
            fresh = cls(coder.UID)
            fresh.add_plugins(registrations)
        except BaseException:
            _DEFERRED[coder] = entry
            raise
        coder.__dict__["_available"] = fresh.__dict__["_available"]
        coder.__dict__["_unavailable"] = fresh.__dict__["_unavailable"]
        coder.__class__ = cls


def restore_all() -> None:
    """Every deferred coder restored and processing's HAVE_PIL settled, as after a plain
    `import pydicom` (tests compare the two); the v2 handlers still load at first access."""
    for coder in list(_DEFERRED):
        restore_coder(coder)
    processing = sys.modules.get(PROCESSING)
    if processing is not None:
        bool(processing.HAVE_PIL)


class _PillowCheck:
    """pydicom.pixels.processing's HAVE_PIL until first tested: then Pillow is imported as that
    module's own import would have (`import PIL`, `from PIL import ImageCms`) and the flag set."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def __bool__(self) -> bool:
        module = self.module
        if module.__dict__.get("HAVE_PIL") is self:
            try:
                import PIL
                from PIL import ImageCms
            except ImportError:
                module.HAVE_PIL = False
            else:
                module.PIL, module.ImageCms, module.HAVE_PIL = PIL, ImageCms, True
        return bool(module.HAVE_PIL)

    def __repr__(self) -> str:
        return "<HAVE_PIL, Pillow not imported yet>"


def _defer_pillow_check() -> None:
    """processing imported while Pillow was hidden: its flag checks again when tested."""
    processing = sys.modules.get(PROCESSING)
    if processing is not None and processing.__dict__.get("HAVE_PIL") is False:
        processing.HAVE_PIL = _PillowCheck(processing)
