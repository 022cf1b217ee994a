"""Reading stored pixel frames into one numpy stack, at close to the speed of reading the bytes.

Uncompressed files (implicit/explicit little endian, explicit big endian) are read straight from
the file into a preallocated array, at the pixel data offset the database index (or a header
scan) recorded, so a 600-slice CT series costs little more than reading its bytes. Everything
else (JPEG, JPEG 2000, JPEG-LS, RLE, deflate, 1-bit, odd layouts) goes through pydicom's pixel
handlers (pylibjpeg, openjpeg, pyjpegls, RLE, GDCM), one frame at a time into the same array.

The stack holds *stored* values (shape (n, rows, cols), or (n, rows, cols, samples) for colour);
`apply_rescale` turns them into modality values without a float64 copy.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .errors import DICOMFileError, LoadError

logger = logging.getLogger(__name__)

#: transfer syntaxes whose pixel data is the raw little/big endian array
NATIVE_LITTLE = {str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)}
NATIVE_BIG = {str(ExplicitVRBigEndian)}

#: image pixel module tags the reader needs ("gggg,eeee")
TAG_ROWS = "0028,0010"
TAG_COLUMNS = "0028,0011"
TAG_BITS_ALLOCATED = "0028,0100"
TAG_BITS_STORED = "0028,0101"
TAG_PIXEL_REPRESENTATION = "0028,0103"
TAG_SAMPLES_PER_PIXEL = "0028,0002"
TAG_PLANAR_CONFIGURATION = "0028,0006"
TAG_NUMBER_OF_FRAMES = "0028,0008"
TAG_SERIES_UID = "0020,000e"
PIXEL_TAGS = [TAG_ROWS, TAG_COLUMNS, TAG_BITS_ALLOCATED, TAG_BITS_STORED, TAG_PIXEL_REPRESENTATION,
              TAG_SAMPLES_PER_PIXEL, TAG_PLANAR_CONFIGURATION, TAG_NUMBER_OF_FRAMES]


@dataclass
class PixelLocation:
    """Where a file's pixel data is and how it is encoded (from the index or a header scan)."""

    path: str
    transfer_syntax: str
    offset: int | None
    length: int | None


@dataclass
class PixelFormat:
    """The array layout of one frame, shared by every file of a stack."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples: int
    planar: int

    @property
    def dtype(self) -> np.dtype:
        if self.bits_allocated not in (8, 16, 32, 64):
            raise LoadError(f"no native numpy type for {self.bits_allocated}-bit pixels")
        kind = "i" if self.signed else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        if self.samples == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.samples)

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples * self.bits_allocated // 8


def _int(text: str, default: int) -> int:
    try:
        return int(float(text.split("\\")[0])) if text else default
    except ValueError:
        return default


def _pixel_format(values: dict[str, str], path: str) -> PixelFormat:
    rows, columns = _int(values.get(TAG_ROWS, ""), 0), _int(values.get(TAG_COLUMNS, ""), 0)
    if rows <= 0 or columns <= 0:
        raise DICOMFileError(path, f"no usable Rows/Columns ({rows}x{columns})")
    bits_allocated = _int(values.get(TAG_BITS_ALLOCATED, ""), 16)
    return PixelFormat(rows=rows, columns=columns, bits_allocated=bits_allocated,
                       bits_stored=_int(values.get(TAG_BITS_STORED, ""), bits_allocated),
                       signed=_int(values.get(TAG_PIXEL_REPRESENTATION, ""), 0) == 1,
                       samples=_int(values.get(TAG_SAMPLES_PER_PIXEL, ""), 1),
                       planar=_int(values.get(TAG_PLANAR_CONFIGURATION, ""), 0))


def _header_values(path: str, tags: Iterable[str]) -> tuple[dict[str, str], PixelLocation]:
    """Pixel module values and pixel data location of one file, parsing only its header."""
    from .tagreader import format_value, parse_tag

    try:
        ds = pydicom.dcmread(path, defer_size=256, force=True)
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, EOFError) as error:
        raise DICOMFileError(path, f"cannot read header: {error}") from error
    values = {tag: format_value(ds.get(parse_tag(tag))) for tag in tags}
    transfer_syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    raw = ds._dict.get(0x7FE00010)  # the still-raw element knows where its value starts in the file
    offset = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    if length == 0xFFFFFFFF:  # encapsulated
        offset = None
    return values, PixelLocation(path, transfer_syntax, offset, length)


def _locations_and_values(files: Sequence[str], database: Any) -> tuple[list[PixelLocation], list[dict[str, str]]]:
    """Index data when there is a database (no file is opened), else one header scan per file."""
    if database is not None:
        values = database.file_values(list(files), PIXEL_TAGS + [TAG_SERIES_UID])
        rows: dict[str, dict] = {}
        for series_uid in dict.fromkeys(values[path].get(TAG_SERIES_UID, "") for path in files):
            if series_uid:
                for row in database.instances(series_uid):
                    rows[str(row["FilePath"])] = row
        if all(path in rows for path in files):
            locations = []
            for path in files:
                row = rows[path]
                offset, length = row.get("PixelDataOffset"), row.get("PixelDataLength")
                locations.append(PixelLocation(path, str(row.get("TransferSyntaxUID") or ""),
                                               int(offset) if offset not in (None, "") else None,
                                               int(length) if length not in (None, "") else None))
            return locations, [values[path] for path in files]
        logger.debug("Some files are not in the database index; scanning their headers")
    try:
        from .headerscan import scan_files
    except ImportError:
        scan_files = None
    if scan_files is not None:
        by_path = {str(r.path): r for r in scan_files([str(f) for f in files], PIXEL_TAGS)}
        locations, values = [], []
        for path in files:
            result = by_path.get(str(path))
            if result is None or result.error:
                raise DICOMFileError(str(path), result.error if result else "not scanned")
            locations.append(PixelLocation(str(path), result.transfer_syntax, result.pixel_data_offset,
                                           result.pixel_data_length))
            values.append(result.values)
        return locations, values
    locations, values = [], []
    for path in files:
        file_values, location = _header_values(str(path), PIXEL_TAGS)
        locations.append(location)
        values.append(file_values)
    return locations, values


def read_frames(files: list[str], database: Any = None,
                frames: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Stack of stored pixel frames, shape (n, rows, cols), in the stored dtype.

    `files` are read in the order given, every frame of each file, unless `frames` lists
    (file index, frame index) pairs to read (multi-frame objects). Colour images give
    (n, rows, cols, samples). All frames must share rows/columns/bit depth.
    """
    files = [str(f) for f in files]
    if not files:
        raise LoadError("no files to read")
    locations, values = _locations_and_values(files, database)
    return read_frames_at(locations, values, frames)


def frame_reader(files: list[str], database: Any = None, frames: list[tuple[int, int]] | None = None) -> "FrameReader":
    """A `FrameReader` over `files` (locations and pixel values from `database`, else a header scan)."""
    files = [str(f) for f in files]
    if not files:
        raise LoadError("no files to read")
    locations, values = _locations_and_values(files, database)
    return FrameReader(locations, values, frames)


def read_frames_at(locations: list[PixelLocation], values: list[dict[str, str]],
                   frames: list[tuple[int, int]] | None = None) -> np.ndarray:
    """`read_frames` for a caller that already holds each file's pixel data location (the index's
    TransferSyntaxUID, PixelDataOffset, PixelDataLength) and its `PIXEL_TAGS` values, e.g. from
    examining: no lookup at all before the reads."""
    return FrameReader(locations, values, frames).read_frames()


class FrameReader:
    """The frames of many files read in order into arrays the caller holds: the whole stack
    (`read_frames_at`), or a few frames at a time into two buffers used in turn (`slabs`, for
    writers that stream a volume to disk without holding it). Layout checks happen on creation."""

    def __init__(self, locations: list[PixelLocation], values: list[dict[str, str]],
                 frames: list[tuple[int, int]] | None = None):
        if not locations or len(locations) != len(values):
            raise LoadError(f"{len(locations)} pixel locations for {len(values)} value sets")
        self.locations = locations
        self.files = [location.path for location in locations]
        self.pixel_format = _pixel_format(values[0], self.files[0])
        self.counts = [max(1, _int(v.get(TAG_NUMBER_OF_FRAMES, ""), 1)) for v in values]
        for path, file_values in zip(self.files, values):
            other = _pixel_format(file_values, path)
            if other.frame_shape != self.pixel_format.frame_shape or \
                    other.bits_allocated != self.pixel_format.bits_allocated:
                raise LoadError(f"{path}: frame layout {other.frame_shape}/{other.bits_allocated} bits differs "
                                f"from {self.files[0]} {self.pixel_format.frame_shape}/"
                                f"{self.pixel_format.bits_allocated} bits")
        self.frames = frames if frames is not None else \
            [(i, k) for i, count in enumerate(self.counts) for k in range(count)]
        # pydicom unpacks 1-bit data to bytes
        self.dtype = np.dtype(np.uint8) if self.pixel_format.bits_allocated == 1 else self.pixel_format.dtype
        self.total_bytes = len(self.frames) * self.pixel_format.frame_bytes
        for location, count in zip(locations, self.counts):
            if location.length is not None and location.transfer_syntax in NATIVE_LITTLE | NATIVE_BIG | {""} \
                    and location.length < self.pixel_format.frame_bytes * count // 2:
                raise DICOMFileError(location.path, f"pixel data holds {location.length} bytes, the header "
                                                    f"promises {count} frame(s) of {self.pixel_format.frame_bytes} bytes")
        self._decoded: dict[int, np.ndarray] = {}

    def read_frames(self) -> np.ndarray:
        """Every frame in one (n, rows, cols[, samples]) array."""
        try:
            stack = np.empty((len(self.frames), *self.pixel_format.frame_shape), dtype=self.dtype)
        except MemoryError as error:
            raise LoadError(f"{self.files[0]}: {len(self.frames)} frames of {self.pixel_format.frame_shape} need "
                            f"{self.total_bytes / 2**30:.1f} GiB, more than is available") from error
        self.read_into(0, stack)
        return stack

    def read_into(self, first: int, out: np.ndarray) -> None:
        """Frames first .. first + len(out) - 1 (of `frames`) into `out`, stored bits fixed."""
        for out_index, (file_index, frame_index) in enumerate(self.frames[first:first + len(out)]):
            location = self.locations[file_index]
            count = self.counts[file_index]
            if frame_index >= count:
                raise LoadError(f"{location.path}: frame {frame_index} asked for, file has {count}")
            if not _read_native(location, self.pixel_format, frame_index, count, out[out_index]):
                _read_with_pydicom(location.path, frame_index, count, out[out_index], self._decoded, file_index)
        _fix_stored_bits(out, self.pixel_format)

    def slabs(self, slab_bytes: int) -> Iterator[np.ndarray]:
        """The frames in order, about `slab_bytes` at a time, each slab valid until the next is
        asked for. The next slab is read by a helper thread while the caller writes this one
        (two buffers in turn): reading and writing are system calls that release the GIL, so a
        converter's read and write overlap on two cores instead of taking turns."""
        from concurrent.futures import ThreadPoolExecutor

        step = max(1, slab_bytes // max(1, self.pixel_format.frame_bytes))
        count = len(self.frames)
        if count == 0:
            return
        shape = (min(step, count), *self.pixel_format.frame_shape)
        buffers = [np.empty(shape, dtype=self.dtype)]
        if count > step:
            buffers.append(np.empty(shape, dtype=self.dtype))
        starts = list(range(0, count, step))

        def read(index: int) -> np.ndarray:
            first = starts[index]
            out = buffers[index % len(buffers)][:min(step, count - first)]
            self.read_into(first, out)
            return out

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slab-reader") as reader:
            pending = reader.submit(read, 0)
            try:
                for index in range(len(starts)):
                    out = pending.result()
                    if index + 1 < len(starts):
                        pending = reader.submit(read, index + 1)  # into the other buffer
                    yield out
            finally:
                pending.cancel()
                # a caller that stops early (an error while writing) waits for the read in flight


def _read_native(location: PixelLocation, pixel_format: PixelFormat, frame_index: int, frame_count: int,
                 out: np.ndarray) -> bool:
    """Read one uncompressed frame straight from the file; False when the fast path does not apply."""
    # no file meta (old ACR-NEMA style files): the DICOM default, implicit VR little endian
    syntax = location.transfer_syntax or str(ImplicitVRLittleEndian)
    if syntax not in NATIVE_LITTLE and syntax not in NATIVE_BIG:
        return False
    if location.offset is None or location.length is None or pixel_format.bits_allocated not in (8, 16, 32, 64):
        return False
    if pixel_format.samples > 1:
        return False  # colour (planes, YBR, 4:2:2) needs pydicom's conversions
    frame_bytes = pixel_format.frame_bytes
    if location.length < frame_bytes * frame_count:
        return False  # truncated or odd: let pydicom decide what to do
    target = out.reshape(-1).view(np.uint8)
    try:
        with open(location.path, "rb", buffering=0) as handle:
            handle.seek(location.offset + frame_index * frame_bytes)
            got = handle.readinto(memoryview(target))
    except OSError as error:
        raise DICOMFileError(location.path, f"cannot read pixel data: {error}") from error
    if got != frame_bytes:
        raise DICOMFileError(location.path, f"pixel data truncated: {got} of {frame_bytes} bytes")
    if syntax in NATIVE_BIG and out.dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return True


def _read_with_pydicom(path: str, frame_index: int, frame_count: int, out: np.ndarray,
                       decoded: dict[int, np.ndarray], file_index: int) -> None:
    """Decode one frame with pydicom's handlers (compressed syntaxes, unusual layouts).

    A multi-frame file is decoded once and kept in `decoded` for its other frames.
    """
    try:
        if file_index not in decoded:
            decoded.clear()  # keep one multi-frame file in memory at a time
            # a whole dataset, not pixel_array(path): that route cannot read deflated files
            dataset = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in dataset.file_meta:  # no meta: say what the parser found
                implicit, little = dataset.original_encoding
                dataset.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                                       ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            try:
                decoded[file_index] = dataset.pixel_array
            except (ValueError, RuntimeError, NotImplementedError) as error:
                fallback = _decode_with_gdcm(path, dataset)
                if fallback is None:
                    raise
                logger.info("%s: decoded by GDCM directly (pydicom's plugins: %s)", path, error)
                decoded[file_index] = fallback
        frame = decoded[file_index] if frame_count == 1 else decoded[file_index][frame_index]
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, OSError,
            KeyError, IndexError) as error:
        raise DICOMFileError(path, f"cannot decode frame {frame_index}: {error}") from error
    if frame.shape != out.shape:
        raise DICOMFileError(path, f"decoded frame shape {frame.shape} != expected {out.shape}")
    out[...] = frame


#: JPEG Extended (process 2 & 4): pydicom's plugins refuse its 12-bit form (GDCM and Pillow by
#: policy, libjpeg on scans some encoders write), which GDCM itself decodes as DCMTK's dcmdjpeg does
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"


def _decode_with_gdcm(path: str, dataset: pydicom.Dataset) -> np.ndarray | None:
    """Grey-scale JPEG Extended pixels decoded by GDCM's own reader, shaped as pydicom would
    ((rows, cols) or (frames, rows, cols)); None when it does not apply or GDCM cannot."""
    syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", ""))
    if syntax != JPEG_EXTENDED or int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    try:
        import gdcm
    except ImportError:
        return None
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        return None
    buffer = reader.GetImage().GetBuffer()
    data = buffer.encode("utf-8", "surrogateescape") if isinstance(buffer, str) else bytes(buffer)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(("<i" if signed else "<u") + str(max(1, int(dataset.BitsAllocated) // 8)))
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    array = np.frombuffer(data, dtype=dtype)
    if array.size != frames * rows * columns:
        return None
    return array.reshape((frames, rows, columns) if frames > 1 else (rows, columns)).copy()


def _fix_stored_bits(stack: np.ndarray, pixel_format: PixelFormat) -> None:
    """Values stored in fewer bits than allocated, in place (no copy): unsigned ones masked to
    BitsStored (the bits above are not part of the value: old Siemens files keep overlay bits
    there, which pydicom and dcm2niix drop too), signed ones sign-extended."""
    bits = pixel_format.bits_stored
    if bits >= pixel_format.bits_allocated or stack.dtype.kind not in "iu":
        return
    if not pixel_format.signed:
        np.bitwise_and(stack, stack.dtype.type((1 << bits) - 1), out=stack)
        return
    if stack.dtype.kind != "i":
        return
    shift = stack.dtype.itemsize * 8 - bits
    np.left_shift(stack, shift, out=stack)
    np.right_shift(stack, shift, out=stack)


def _integer_rescale(stack: np.ndarray, intercepts: np.ndarray) -> np.ndarray | None:
    """stored + intercept as int16, frame by frame (each frame's range checked while it is in
    the CPU cache, then added: one pass over memory); None when a frame would not fit int16."""
    info = np.iinfo(np.int16)
    out = stack if stack.dtype == np.int16 else np.empty(stack.shape, dtype=np.int16)
    done = 0
    for index in range(stack.shape[0]):
        frame = stack[index]
        intercept = int(intercepts[index])
        if frame.size and (int(frame.min()) + intercept < info.min or int(frame.max()) + intercept > info.max):
            if out is stack:  # undo the frames already shifted: integer adds are exact
                for undo in range(done):
                    np.subtract(stack[undo], np.int16(intercepts[undo]), out=stack[undo])
            return None
        if intercept or out is not stack:
            np.add(frame, np.int32(intercept), out=out[index], casting="unsafe")
        done += 1
    return out


def philips_precise_scaling(slope: float, intercept: float, scale_slope: float | None) -> tuple[float, float]:
    """(slope, intercept) giving Philips' precise floating-point value from stored values.

    Philips writes two scalings: RescaleSlope/Intercept give the *display* value (DV = SV * RS + RI),
    the private scale slope SS (2005,100E) the *precise* value FP = DV / (RS * SS), which is what
    Philips documents for quantitative use and what dcm2niix writes by default
    (`UsePhilipsFloatNotDisplayScaling`). Without a usable SS the display scaling is returned.
    """
    if not scale_slope or not math.isfinite(scale_slope) or not slope:
        return slope, intercept
    return 1.0 / scale_slope, intercept / (slope * scale_slope)


def apply_rescale(stack: np.ndarray, slopes: Sequence[float] | float,
                  intercepts: Sequence[float] | float) -> np.ndarray:
    """Modality values from stored values: slope * stored + intercept, per frame or for all.

    int16 is kept (the stack is modified in place when it is int16) when every slope is 1, every intercept an
    integer and the result fits; otherwise float32. Never makes a float64 copy of the stack.
    """
    n = stack.shape[0]
    slopes_array = np.broadcast_to(np.asarray(slopes, dtype=np.float64), (n,))
    intercepts_array = np.broadcast_to(np.asarray(intercepts, dtype=np.float64), (n,))
    integer_rescale = bool(np.all(slopes_array == 1.0) and np.all(intercepts_array == np.round(intercepts_array)))
    if integer_rescale and stack.dtype.kind in "iu" and stack.dtype.itemsize <= 2:
        if np.all(intercepts_array == 0) and stack.dtype == np.int16:
            return stack
        out = _integer_rescale(stack, intercepts_array)
        if out is not None:
            return out
    out = stack.astype(np.float32)
    if np.all(slopes_array == slopes_array[0]) and np.all(intercepts_array == intercepts_array[0]):
        if slopes_array[0] != 1.0:
            out *= np.float32(slopes_array[0])
        if intercepts_array[0] != 0.0:
            out += np.float32(intercepts_array[0])
    else:
        for index in range(n):
            out[index] *= np.float32(slopes_array[index])
            out[index] += np.float32(intercepts_array[index])
    return out


# --- colour ------------------------------------------------------------------------------------------
TAG_PHOTOMETRIC = "0028,0004"
PALETTE_COLOR = "PALETTE COLOR"


def _photometric_interpretations(files: Sequence[str], database: Any) -> list[str]:
    """PhotometricInterpretation of each file: the database tag cache, else one in-process header scan."""
    if database is not None:
        found = database.file_values(list(files), [TAG_PHOTOMETRIC])
        return [found.get(path, {}).get(TAG_PHOTOMETRIC, "").strip().upper() for path in files]
    from .headerscan import scan_files

    # in-process (workers=1): the caller may hold VTK or Qt, which must not be forked
    by_path = {str(r.path): r for r in scan_files([str(f) for f in files], [TAG_PHOTOMETRIC], workers=1)}
    return [(by_path[str(path)].values.get(TAG_PHOTOMETRIC, "") if str(path) in by_path else "").strip().upper()
            for path in files]


def read_rgb_frames(files: list[str], database: Any = None,
                    frames: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Colour frames as RGB, shape (n, rows, cols, 3), for colour images (vector volumes).

    RGB and YBR files (YBR_FULL, YBR_FULL_422, the JPEG ICT/RCT forms) are decoded by pydicom's
    handlers through `read_frames`; pydicom converts YBR to RGB (`as_rgb`, its default in
    pydicom 3, the same conversion as `pydicom.pixels.convert_color_space`).
    PALETTE COLOR files (one sample: indices) are looked up in each file's own palette with
    `apply_color_lut`; 16-bit palette entries are reduced to 8 bits (the high byte), so every
    8-bit colour image gives uint8. RGB stored in 16 bits keeps uint16.
    """
    from pydicom.pixels import apply_color_lut

    files = [str(f) for f in files]
    photometric = _photometric_interpretations(files, database)
    if frames is None:
        frames = [(i, k) for i, path in enumerate(files) for k in range(_frame_count(path, database))]
    stack = read_frames(files, database, frames)
    file_of_frame = [int(i) for i, _ in frames]
    if stack.ndim == 4 and stack.shape[3] == 3:
        return stack  # RGB (pydicom already converted YBR to RGB)
    if stack.ndim != 3:
        raise LoadError(f"{files[0]}: colour frames of shape {stack.shape[1:]} are neither RGB nor palette indices")
    out: np.ndarray | None = None
    for file_index in dict.fromkeys(file_of_frame):
        path = files[file_index]
        if photometric[file_index] != PALETTE_COLOR:
            raise DICOMFileError(path, f"one sample per pixel with PhotometricInterpretation "
                                       f"{photometric[file_index] or '(none)'}: not a colour image")
        from .multiframe import read_header

        header = read_header(path)
        selected = [k for k, i in enumerate(file_of_frame) if i == file_index]
        try:
            rgb = apply_color_lut(stack[selected], header)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError) as error:
            raise DICOMFileError(path, f"cannot apply the palette colour lookup table: {error}") from error
        if rgb.dtype.itemsize > 1:
            bits = int(header.RedPaletteColorLookupTableDescriptor[2]) if "RedPaletteColorLookupTableDescriptor" in header else 16
            rgb = (rgb >> 8).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)
        if out is None:
            out = np.empty((stack.shape[0], *rgb.shape[1:]), dtype=np.uint8)
        out[selected] = rgb
    if out is None:
        raise LoadError(f"{files[0]}: no frames to read")
    return out


def _frame_count(path: str, database: Any) -> int:
    if database is not None:
        return max(1, _int(database.file_value(path, TAG_NUMBER_OF_FRAMES), 1))
    from .multiframe import number_of_frames, read_header

    return number_of_frames(read_header(path))
