"""pydicom imported by `convert` and `load` without `requests` and with its pixel codecs deferred
(leanimport), each in a fresh process, against a process that imports pydicom plainly."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

REPO = Path(__file__).resolve().parents[1]
CODECS = ("gdcm", "PIL", "pylibjpeg", "openjpeg", "libjpeg", "rle", "jpeg_ls")

CODE = """
import sys
from DICOMBrowser.DICOMBrowserLib.leanimport import import_pydicom
import_pydicom()
assert "pydicom" in sys.modules and "requests" not in sys.modules and "tqdm" not in sys.modules
import pydicom
import pydicom.data.download as download
assert download.HAVE_REQUESTS is False  # its test-file downloads go through urllib
ds = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
assert ds.SOPInstanceUID
import requests  # DICOMweb still gets it afterwards
assert requests.Session
import tqdm
assert tqdm.tqdm
"""


def run_python(code: str, *args: str) -> str:
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                               timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_pydicom_reads_and_requests_stays_importable(series_factory):
    path = series_factory(count=1)[0]
    run_python(CODE, str(path))


NUMPY_CODE = """
import os, sys
from DICOMBrowser.DICOMBrowserLib.leanimport import import_pydicom
import_pydicom()
import numpy
assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == sys.argv[1], os.environ.get("NUMPY_MADVISE_HUGEPAGE")
assert os.environ["OPENBLAS_NUM_THREADS"] == sys.argv[2], os.environ.get("OPENBLAS_NUM_THREADS")
assert numpy.ones((2000, 2000), numpy.int16).astype(numpy.float32).sum() == 4_000_000
assert len(os.listdir("/proc/self/task")) == int(sys.argv[3])  # OpenBLAS: one thread per extra core
"""


def test_numpy_huge_page_advice_and_blas_threads_off_unless_the_user_chose(tmp_path):
    """import_pydicom imports numpy with NUMPY_MADVISE_HUGEPAGE=0 (no compaction stalls on big
    arrays) and OPENBLAS_NUM_THREADS=1 (no spinning threads); values the user set are kept."""
    import os

    environment = {k: v for k, v in os.environ.items() if k not in ("NUMPY_MADVISE_HUGEPAGE", "OPENBLAS_NUM_THREADS")}
    subprocess.run([sys.executable, "-c", NUMPY_CODE, "0", "1", "1"], check=True, timeout=120, cwd=REPO,
                   env=environment)
    subprocess.run([sys.executable, "-c", NUMPY_CODE, "1", "2", "2"], check=True, timeout=120, cwd=REPO,
                   env={**environment, "NUMPY_MADVISE_HUGEPAGE": "1", "OPENBLAS_NUM_THREADS": "2"})


# --- the pixel codecs, deferred ------------------------------------------------------------------
#: run the CLI in this process: "lean" as `dicombrowser` does, "plain" after `import pydicom`
#: (import_pydicom then changes nothing); prints the codec packages imported at the end
CLI_CODE = """
import json, sys
mode, args = sys.argv[1], sys.argv[2:]
if mode == "plain":
    import pydicom
from DICOMBrowser.DICOMBrowserLib.cli import cli
cli.main(args=["--temporary", *args], standalone_mode=False)
print(json.dumps(sorted(name for name in %r if name in sys.modules)))
""" % (CODECS,)


def run_cli(mode: str, *args: str) -> list[str]:
    """The codec packages imported by the end of the command (its last line of output)."""
    return json.loads(run_python(CLI_CODE, mode, *args).strip().splitlines()[-1])


def test_an_uncompressed_folder_imports_no_codec(series_factory, tmp_path):
    """`load` and `convert` (one worker: the decoding is in this process) of uncompressed files:
    gdcm, Pillow, pylibjpeg and the others never imported; a plain import imports them all."""
    folder = str(series_factory(count=3, rows=8, columns=8)[0].parent)
    assert run_cli("lean", "load", folder, "-o", str(tmp_path / "x.nii")) == []
    assert run_cli("lean", "convert", folder, "-o", str(tmp_path / "out"), "--format", "nii", "-j", "1") == []
    assert nibabel.load(str(tmp_path / "x.nii")).shape == (8, 8, 3)
    assert run_cli("plain", "load", folder, "-o", str(tmp_path / "y.nii")) == sorted(CODECS)


def bundled_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not bundled")
    return Path(path)


#: pydicom's bundled compressed files that convert to a volume: RLE, JPEG 2000 (lossless and not),
#: JPEG-LS, JPEG Extended 12-bit (which pixelreader decodes with GDCM itself)
BUNDLED = ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "693_J2KI.dcm",
           "JPGExtended.dcm")

#: DCMTK's encoders: JPEG lossless SV1, JPEG lossless (process 14), JPEG-LS lossless, RLE
DCMTK = {"dcmtk-jpeg-sv1": ["dcmcjpeg"], "dcmtk-jpeg-p14": ["dcmcjpeg", "+el"],
         "dcmtk-jpegls": ["dcmcjpls"], "dcmtk-rle": ["dcmcrle"]}

#: pydicom's encoders (pydicom's own or gdcm for RLE, pyjpegls, pylibjpeg/openjpeg)
PYDICOM = {"pydicom-rle": RLELossless, "pydicom-jpegls": JPEGLSLossless, "pydicom-j2k": JPEG2000Lossless}


def compressed_folder(series_factory, root: Path) -> dict[str, Path]:
    """A folder of compressed series, each its own series: name -> its sub-folder of root.
    "original" is the uncompressed series the lossless encoders compressed."""
    original = series_factory("original", count=3, rows=64, columns=48, series_description="original")
    shutil.copytree(original[0].parent, root / "original")
    folders = {"original": root / "original"}
    scratch = original[0].parent.parent / "dcmtk-input.dcm"

    def encoded(name: str, encode) -> None:
        """A series of its own in root/name: each original file re-identified, then encode(ds, target)."""
        folder = root / name
        folder.mkdir()
        series_uid = generate_uid()
        for path in original:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, name
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            encode(ds, folder / path.name)
        folders[name] = folder

    def with_dcmtk(command):
        def encode(ds, target):
            ds.save_as(scratch, enforce_file_format=True)
            subprocess.run([*command, str(scratch), str(target)], check=True, timeout=60)
        return encode

    def with_pydicom(syntax):
        def encode(ds, target):
            ds.compress(syntax, generate_instance_uid=False)
            ds.save_as(target, enforce_file_format=True)
        return encode

    for name, command in DCMTK.items():
        if shutil.which(command[0]) is not None:
            encoded(name, with_dcmtk(command))
    for name, syntax in PYDICOM.items():
        encoded(name, with_pydicom(syntax))
    for name in BUNDLED:
        ds = pydicom.dcmread(bundled_file(name))  # a series of its own: some of them share their UIDs
        ds.SeriesInstanceUID, ds.SeriesDescription = generate_uid(), Path(name).stem
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        (root / name).mkdir()
        ds.save_as(root / name / name, enforce_file_format=False)
        folders[name] = root / name
    for name, folder in folders.items():
        if name != "original":
            syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                        for p in folder.iterdir()}
            assert all(pydicom.uid.UID(s).is_compressed for s in syntaxes), (name, syntaxes)
    return folders


def converted_arrays(output: Path) -> dict[str, np.ndarray]:
    """Every NIfTI under output: its name -> voxels."""
    return {str(path.relative_to(output)): np.asanyarray(nibabel.load(str(path)).dataobj)
            for path in sorted(output.rglob("*.nii*"))}


def test_compressed_series_convert_and_load_as_with_a_plain_import(series_factory, tmp_path):
    """`convert` of a folder of compressed series (DCMTK's, pydicom's encoders', pydicom's bundled
    files) and `load` of some, fresh processes: the voxels a plain import decodes, the lossless
    ones equal to the uncompressed original."""
    source = tmp_path / "source"
    source.mkdir()
    folders = compressed_folder(series_factory, source)
    outputs = {}
    for mode in ("lean", "plain"):
        output = tmp_path / mode
        loaded = run_cli(mode, "convert", str(source), "-o", str(output), "--format", "nii", "-j", "1",
                         "--no-sidecar", "--no-provenance")
        assert (mode, loaded) != ("lean", []), "nothing compressed was decoded"
        outputs[mode] = converted_arrays(output)
    lean, plain = outputs["lean"], outputs["plain"]
    assert lean.keys() == plain.keys() and len(lean) == len(folders), sorted(lean)
    for name in lean:
        assert lean[name].dtype == plain[name].dtype and np.array_equal(lean[name], plain[name]), name
    originals = [array for name, array in lean.items() if "original" in name]
    assert len(originals) == 1
    for name in [*DCMTK, *PYDICOM]:
        matching = [array for key, array in lean.items() if name in key]
        if name in folders:
            assert len(matching) == 1 and np.array_equal(matching[0], originals[0]), name
    for name in ("dcmtk-jpeg-sv1", "JPGExtended.dcm"):  # JPEG lossless; 12-bit JPEG Extended (GDCM itself)
        if name in folders:
            target = tmp_path / f"{name}.nii"
            assert "gdcm" in run_cli("lean", "load", str(folders[name]), "-o", str(target))
            (converted,) = [array for key, array in plain.items() if Path(name).stem in key]
            assert np.array_equal(np.asanyarray(nibabel.load(str(target)).dataobj), converted), name


#: every way pydicom decodes and encodes, each the first use of its decoder or encoder (asserted
#: in the lean process), then the plugin tables of every coder; printed as JSON to compare
API_CODE = """
import hashlib, json, sys
mode, files, missing = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]

class NotInstalled:  # the packages in `missing` cannot be found, as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
if mode == "lean":
    from DICOMBrowser.DICOMBrowserLib import leanimport
    leanimport.import_pydicom()
    assert not any(name in sys.modules for name in %r)
import numpy as np
import pydicom
from pydicom import uid
from pydicom.pixels import get_decoder, get_encoder, iter_pixels, pixel_array, apply_icc_profile, processing
from pydicom.pixels.decoders.base import Decoder
from pydicom.pixels.encoders.base import Encoder

results = {}

def digest(array):
    return [str(array.dtype), list(array.shape), hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()]

def check(key, syntax, use, coder=get_decoder):
    if mode == "lean" and syntax:
        assert type(coder(syntax)) not in (Decoder, Encoder), (key, "already restored")
    try:
        results[key] = use()
    except Exception as error:
        results[key] = {"error": f"{type(error).__name__}: {error}"}

def read(name):
    return pydicom.dcmread(files[name])

def v2(name):
    ds = read(name)
    ds.pixel_array_options(use_v2_backend=True)
    return digest(ds.pixel_array)

def decompressed(name):
    ds = read(name)
    ds.decompress()
    return [str(ds.file_meta.TransferSyntaxUID), digest(ds.pixel_array)]

def compressed(syntax):
    ds = read("MR_small.dcm")
    ds.compress(syntax, generate_instance_uid=False)
    return [hashlib.sha1(ds.PixelData).hexdigest(), digest(pixel_array(ds))]

check("v2 backend", None, lambda: v2("MR_small_jp2klossless.dcm"))
check("v2 backend RLE", None, lambda: v2("SC_rgb_rle.dcm"))
check("apply_icc_profile", None, lambda: apply_icc_profile(np.zeros((2, 2, 3), np.uint8), ds=read("MR_small.dcm")))
results["HAVE_PIL"] = bool(processing.HAVE_PIL)
check("Dataset.pixel_array", uid.RLELossless, lambda: digest(read("MR_small_RLE.dcm").pixel_array))
check("pixels.pixel_array", uid.JPEGLSLossless, lambda: digest(pixel_array(files["MR_small_jpeg_ls_lossless.dcm"])))
check("iter_pixels", uid.JPEG2000, lambda: [digest(a) for a in iter_pixels(files["693_J2KI.dcm"])])
check("Decoder.as_array", uid.JPEG2000Lossless,
      lambda: digest(get_decoder(uid.JPEG2000Lossless).as_array(read("MR_small_jp2klossless.dcm"))[0]))
check("Decoder.iter_array", uid.JPEGBaseline8Bit,
      lambda: [digest(a) for a, _ in get_decoder(uid.JPEGBaseline8Bit).iter_array(read("SC_rgb_jpeg_dcmtk.dcm"))])
check("Decoder.available_plugins", uid.JPEGExtended12Bit, lambda: get_decoder(uid.JPEGExtended12Bit).available_plugins)
check("Dataset.pixel_array 12-bit", None, lambda: digest(read("JPGExtended.dcm").pixel_array))
check("Dataset.decompress", uid.JPEGLSNearLossless, lambda: decompressed("JPEGLSNearLossless_16.dcm"))
check("Dataset.compress RLE", uid.RLELossless, lambda: compressed(uid.RLELossless), get_encoder)
check("Dataset.compress JPEG-LS", uid.JPEGLSLossless, lambda: compressed(uid.JPEGLSLossless), get_encoder)
check("Encoder.encode", uid.JPEG2000Lossless,
      lambda: hashlib.sha1(get_encoder(uid.JPEG2000Lossless).encode(read("MR_small.dcm"))).hexdigest(), get_encoder)
check("Encoder.is_available", uid.JPEG2000, lambda: get_encoder(uid.JPEG2000).is_available, get_encoder)

if mode == "lean":
    leanimport.restore_all()
for syntax in uid.AllTransferSyntaxes:
    for kind, get in (("decoder", get_decoder), ("encoder", get_encoder)):
        try:
            coder = get(syntax)
        except NotImplementedError:
            continue
        assert type(coder) in (Decoder, Encoder)
        results[f"{kind} {syntax}"] = [
            [(label, f"{function.__module__}.{function.__qualname__}") for label, function in coder._available.items()],
            list(coder._unavailable.items()), coder.missing_dependencies, coder.is_available]
print(json.dumps(results, sort_keys=True))
""" % (CODECS,)

#: the files API_CODE reads
API_FILES = ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
             "693_J2KI.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "JPGExtended.dcm", "JPEGLSNearLossless_16.dcm")


@pytest.mark.parametrize("missing", [(), ("gdcm", "pylibjpeg", "jpeg_ls", "PIL")], ids=["installed", "missing"])
def test_every_decode_and_encode_route_as_with_a_plain_import(missing):
    """Dataset.pixel_array, pixels.pixel_array, iter_pixels, Decoder.as_array/iter_array,
    Dataset.decompress/compress, Encoder.encode, the deprecated v2 handlers and the ICC profile
    check, each the first use of its coder after import_pydicom: the same arrays, encoded bytes
    and errors as after a plain import, and afterwards the same plugin tables for every coder;
    with codec packages missing, the same "missing dependencies" errors."""
    files = json.dumps({name: str(bundled_file(name)) for name in API_FILES})
    lean = json.loads(run_python(API_CODE, "lean", files, *missing))
    plain = json.loads(run_python(API_CODE, "plain", files, *missing))
    assert lean == plain
    assert lean["HAVE_PIL"] is (not missing)
    errors = sorted(key for key, value in lean.items() if isinstance(value, dict))
    if missing:
        assert "missing dependencies" in lean["pixels.pixel_array"]["error"], lean  # JPEG-LS
        assert "Dataset.pixel_array" not in errors  # RLE: pydicom's own decoder
    else:
        assert errors == ["apply_icc_profile"], errors  # no ICC profile in that file: after the Pillow check


THREADS_CODE = """
import sys, threading
from DICOMBrowser.DICOMBrowserLib import leanimport
leanimport.import_pydicom()
import pydicom
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
coder = get_decoder(pydicom.uid.JPEG2000Lossless)
assert type(coder) is not Decoder
barrier, arrays = threading.Barrier(8), []
def decode():
    ds = pydicom.dcmread(sys.argv[1])
    barrier.wait()
    arrays.append(ds.pixel_array)
threads = [threading.Thread(target=decode) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert len(arrays) == 8 and all((a == arrays[0]).all() for a in arrays)
assert type(coder) is Decoder and coder.available_plugins == ("gdcm", "pillow", "pylibjpeg")
"""


def test_threads_first_decoding_together_share_one_restore():
    """Eight threads decoding JPEG 2000 at once, the coder's first use: all get the pixels, and
    the coder ends as a plain import makes it."""
    run_python(THREADS_CODE, str(bundled_file("MR_small_jp2klossless.dcm")))


OTHER_VERSION_CODE = """
import sys
from DICOMBrowser.DICOMBrowserLib import leanimport
leanimport._is_pydicom_3_0 = lambda: False  # as if another pydicom were installed
leanimport.import_pydicom()
assert "requests" not in sys.modules and not leanimport._DEFERRED
assert all(name in sys.modules for name in %r)
""" % (CODECS,)


def test_another_pydicom_version_imports_its_codecs_as_before():
    run_python(OTHER_VERSION_CODE)
