"""PET standardized uptake values (SUV): the factor that turns a PET image into SUV.

SUV = activity concentration (Bq/ml) x normaliser / injected activity decayed to the scan start.
The steps follow the QIBA/UW vendor-neutral SUV pseudo-code (Kinahan et al., "PET/CT
Standardized Uptake Values (SUVs) in Clinical Practice and Assessing Response to Therapy",
Semin Ultrasound CT MR 2010, and QIBA's "Vendor-neutral pseudo-code for SUV calculation"):

- Units (0054,1001): BQML -> the formula below; CNTS (Philips) -> the private SUV Scale Factor
  (7053,1000) times the rescaled value; GML -> values already SUVbw (g/ml). Anything else is
  refused.
- Decay correction (0054,1102): START (images decay-corrected to the scan start) -> the injected
  activity is decayed from the injection time to the scan start; ADMIN (corrected to the
  injection time) -> no decay; NONE (each image holds the activity of its own acquisition) ->
  each image gets its own factor: the injected activity decayed to that image's
  AcquisitionDate/Time and averaged over its ActualFrameDuration (see `frame_decayed_dose`).
- Scan start: SeriesDate/SeriesTime, unless the series was made after acquisition (series
  time later than the earliest acquisition time: a reprocessed series), then GE's private
  scan date/time (0009,100D) when present, else the earliest AcquisitionDate/Time of the series.
- Injection time: RadiopharmaceuticalStartDateTime (0018,1078) when present, else the scan date
  with RadiopharmaceuticalStartTime (0018,1072); a time-only difference that comes out negative
  crossed midnight and gets 24 h added.
- decayed dose (Bq) = RadionuclideTotalDose x 2^(-(scan start - injection) / RadionuclideHalfLife).
- A Real World Value Mapping in the image whose units are an SUV (e.g. {SUVbw}g/ml, as Siemens
  and GE write them) is the scanner's own SUV: it replaces the computed factor of that kind
  (its slope applies to stored values; divided by RescaleSlope it applies to rescaled ones).
- A separate Real World Value Mapping object (SOP class 1.2.840.10008.5.1.4.1.1.67, modality
  RWV, e.g. QIICR's SUVFactorCalculator's "PET SUV Factors") that references every image of the
  series replaces the factor of its kind too, and its units become the volume's. One mapping
  there covers images whose RescaleSlopes differ, so its slope applies to the rescaled values
  (Bq/ml), as its writer computes it and as Slicer's RWVM plugin applies it (to the loaded
  activity volume). `read_value_mappings` reads one, `apply_value_mappings` uses it.

Normalisers (W weight kg, H height, sex from PatientSex):
- bw: W x 1000 (g); SUVbw in g/ml.
- lbm, James (Hallynck et al. 1981, after James 1976): male 1.10 W - 128 (W/H_cm)^2, female
  1.07 W - 148 (W/H_cm)^2 (kg, x 1000 g); SUVlbm in g/ml.
- lbm, Janmahasatian et al. (Clin Pharmacokinet 2005): male 9270 W / (6680 + 216 BMI), female
  9270 W / (8780 + 244 BMI), BMI = W / H_m^2 (kg, x 1000 g); SUVlbm in g/ml.
- bsa, DuBois & DuBois (1916): 0.007184 x W^0.425 x H_cm^0.725 m^2 (x 10^4 cm^2); SUVbsa in cm^2/ml.
- ibw, Devine (1974): male 50 + 2.3 (H_in - 60), female 45.5 + 2.3 (H_in - 60) kg (x 1000 g);
  SUVibw in g/ml.

Every refusal (`SUVError`) names the attribute that is missing and the file it is missing from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from .errors import DICOMBrowserError

#: kinds of SUV offered, in the order a user sees them (bw is the default)
KINDS = ("bw", "lbm", "lbmJanma", "bsa", "ibw")
UNITS = {"bw": "g/ml", "lbm": "g/ml", "lbmJanma": "g/ml", "bsa": "cm2/ml", "ibw": "g/ml"}
LABELS = {"bw": "SUVbw", "lbm": "SUVlbm (James)", "lbmJanma": "SUVlbm (Janmahasatian)", "bsa": "SUVbsa",
          "ibw": "SUVibw"}
#: private tags: Philips SUV scale factor, Philips activity concentration scale factor, GE scan date/time
PHILIPS_SUV_SCALE = (0x7053, 0x1000)
PHILIPS_ACTIVITY_SCALE = (0x7053, 0x1009)
GE_SCAN_DATETIME = (0x0009, 0x100D)


class SUVError(DICOMBrowserError):
    """SUV cannot be computed; the message names the missing or unusable attribute and the file."""


@dataclass
class SUVFactors:
    """Multiply the rescaled PET value (Units as stored) by `factors[kind]` to get SUV of that kind.

    `refused[kind]` says why a kind is not available (the missing attribute and file)."""

    factors: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    units: str = ""  # the image's Units (BQML, CNTS, GML)
    decay_time_s: float | None = None
    decayed_dose_bq: float | None = None
    scan_start: str = ""
    injection: str = ""
    notes: list[str] = field(default_factory=list)
    #: kind -> where its factor came from (SOURCE_COMPUTED, SOURCE_IMAGE_MAPPING or the RWVM object)
    sources: dict[str, str] = field(default_factory=dict)
    #: kind -> (code value, scheme, meaning) of the units a mapping object gave that factor
    units_codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: kind -> SOPInstanceUID of the Real World Value Mapping object its factor came from
    mapping_uids: dict[str, str] = field(default_factory=dict)
    #: DecayCorrection NONE: file -> injected activity decayed to (and averaged over) that image's
    #: acquisition; `factors` hold the earliest image's, the others scale by its dose / theirs
    frame_decayed_dose_bq: dict[str, float] = field(default_factory=dict)

    def frame_scale(self, kind: str, path: str) -> float:
        """What `factors[kind]` is multiplied by for the image in `path` (1 unless DecayCorrection
        NONE gave each image its own decay and the factor of `kind` was computed, not mapped)."""
        if not self.frame_decayed_dose_bq or self.sources.get(kind) != SOURCE_COMPUTED:
            return 1.0
        return float(self.decayed_dose_bq) / self.frame_decayed_dose_bq[path]


SOURCE_COMPUTED = "computed from the image header"
SOURCE_IMAGE_MAPPING = "the image's own Real World Value Mapping"


def _value(dataset: Any, keyword: str) -> Any:
    value = dataset.get(keyword, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _need(dataset: Any, keyword: str, path: str, why: str) -> Any:
    value = _value(dataset, keyword)
    if value is None:
        raise SUVError(f"{path}: {keyword} is missing ({why}); SUV cannot be computed")
    return value


def parse_datetime(date: str | None, time: str | None) -> datetime | None:
    """DICOM DA + TM (or a DT in `date` with `time` None) as a naive datetime; None if absent."""
    if date is None and time is None:
        return None
    text = (str(date or "").strip() + (str(time).strip() if time is not None else "")).split("+")[0].split("-")[0]
    if not text:
        return None
    if date is None or not str(date).strip():  # time only: on an arbitrary day, for differences
        text = "19000101" + text
    whole, _, fraction = text.partition(".")
    whole = whole.ljust(14, "0")[:14]
    try:
        parsed = datetime.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if fraction:
        parsed += timedelta(microseconds=int((fraction + "000000")[:6]))
    return parsed


def _time_only(value: str | None) -> datetime | None:
    return parse_datetime(None, value) if value else None


def scan_start(first: Any, path: str, notes: list[str],
               acquisitions: Sequence[datetime] = ()) -> datetime:
    """The scan start time (see module docstring) from the first file's header and the series'
    acquisition date/times (the first file's own when none are given)."""
    series = parse_datetime(_value(first, "SeriesDate"), _value(first, "SeriesTime"))
    if not acquisitions and _value(first, "AcquisitionTime") is not None:
        own = parse_datetime(_value(first, "AcquisitionDate") or _value(first, "SeriesDate"), _value(first, "AcquisitionTime"))
        acquisitions = [own] if own is not None else []
    earliest = min(acquisitions) if acquisitions else None
    if series is not None and (earliest is None or series <= earliest):
        return series
    private = first.get(GE_SCAN_DATETIME)
    if private is not None and private.value:
        ge = parse_datetime(str(private.value), None)
        if ge is not None:
            notes.append("scan start from GE's private scan date/time (0009,100D): the series was made after acquisition")
            return ge
    if earliest is not None:
        if series is not None:
            notes.append("scan start from the earliest AcquisitionTime: SeriesTime is after acquisition")
        return earliest
    _need(first, "SeriesTime", path, "the scan start time for decay correction")
    raise SUVError(f"{path}: SeriesDate is missing (the scan start date); SUV cannot be computed")


def injection_time(dataset: Any, scan: datetime, path: str) -> datetime:
    """Radiopharmaceutical start: its DateTime, else the scan date with its Time (midnight handled)."""
    info = _need(dataset, "RadiopharmaceuticalInformationSequence", path, "the injected activity and its time")[0]
    full = _value(info, "RadiopharmaceuticalStartDateTime")
    if full is not None:
        parsed = parse_datetime(str(full), None)
        if parsed is not None:
            return parsed
    start = _value(info, "RadiopharmaceuticalStartTime")
    if start is None:
        raise SUVError(f"{path}: RadiopharmaceuticalStartTime is missing (the injection time, in "
                       "RadiopharmaceuticalInformationSequence); SUV cannot be computed")
    time = _time_only(str(start))
    if time is None:
        raise SUVError(f"{path}: RadiopharmaceuticalStartTime {start!r} is not a DICOM time")
    injected = datetime.combine(scan.date(), time.time())
    if injected > scan:  # injected the evening before a scan after midnight
        injected -= timedelta(days=1)
    return injected


def frame_decayed_dose(dose_bq: float, half_life_s: float, decay_time_s: float,
                       duration_s: float | None) -> float:
    """The injected activity (Bq) as an image that is not decay corrected saw it: decayed from the
    injection to the image's acquisition start (`decay_time_s` later), then averaged over the
    frame's duration, because the image holds the mean activity over its frame:

        D x 2^(-t / T) x (1 - 2^(-d / T)) / (d ln2 / T)     (t decay time, d duration, T half-life)

    The mean term is the usual frame decay correction of dynamic PET; with it, dose at series start
    / this value is the Decay Factor (0054,1321) scanners write for DecayCorrection START (checked
    on a real Siemens image in the tests). Without a duration the image is taken at its start."""
    decayed = dose_bq * math.pow(2.0, -decay_time_s / half_life_s)
    if duration_s:
        rate = math.log(2.0) / half_life_s
        decayed *= -math.expm1(-rate * duration_s) / (rate * duration_s)
    return decayed


def body_normalisers(dataset: Any, path: str) -> tuple[dict[str, float], dict[str, str]]:
    """Normaliser of each SUV kind (g, or cm^2 for bsa) and why any kind is not available."""
    found: dict[str, float] = {}
    refused: dict[str, str] = {}
    weight = _value(dataset, "PatientWeight")
    if weight is None or float(weight) <= 0:
        reason = f"{path}: PatientWeight (0010,1030) is missing or zero; SUV cannot be computed"
        return {}, {kind: reason for kind in KINDS}
    weight = float(weight)
    found["bw"] = weight * 1000.0
    size = _value(dataset, "PatientSize")
    sex = str(_value(dataset, "PatientSex") or "").upper()
    if size is None or float(size) <= 0:
        reason = f"{path}: PatientSize (0010,1020, height in m) is missing; needed for SUVlbm, SUVbsa, SUVibw"
        refused.update({kind: reason for kind in ("lbm", "lbmJanma", "bsa", "ibw")})
        return found, refused
    height_m = float(size)
    height_cm = height_m * 100.0
    found["bsa"] = 0.007184 * weight ** 0.425 * height_cm ** 0.725 * 1e4
    if sex not in ("M", "F"):
        reason = f"{path}: PatientSex (0010,0040) is {sex or 'missing'}, not M or F; needed for SUVlbm and SUVibw"
        refused.update({kind: reason for kind in ("lbm", "lbmJanma", "ibw")})
        return found, refused
    bmi = weight / height_m ** 2
    if sex == "M":
        found["lbm"] = (1.10 * weight - 128.0 * (weight / height_cm) ** 2) * 1000.0
        found["lbmJanma"] = 9270.0 * weight / (6680.0 + 216.0 * bmi) * 1000.0
        found["ibw"] = (50.0 + 2.3 * (height_cm / 2.54 - 60.0)) * 1000.0
    else:
        found["lbm"] = (1.07 * weight - 148.0 * (weight / height_cm) ** 2) * 1000.0
        found["lbmJanma"] = 9270.0 * weight / (8780.0 + 244.0 * bmi) * 1000.0
        found["ibw"] = (45.5 + 2.3 * (height_cm / 2.54 - 60.0)) * 1000.0
    for kind in ("lbm", "ibw"):
        if found[kind] <= 0:
            refused[kind] = f"{path}: {LABELS[kind]} formula gives {found.pop(kind) / 1000:.1f} kg for this height and weight"
    return found, refused


#: SUV units of a Real World Value Mapping (UCUM code value) -> SUV kind
RWVM_UNITS = {"{SUVbw}g/ml": "bw", "{SUVlbm}g/ml": "lbm", "{SUVlbm(James128)}g/ml": "lbm",
              "{SUVlbm(Janma)}g/ml": "lbmJanma", "{SUVbsa}cm2/ml": "bsa", "{SUVibw}g/ml": "ibw"}
REAL_WORLD_VALUE_MAPPING_STORAGE = "1.2.840.10008.5.1.4.1.1.67"


def mapped_suv_factors(first: Any) -> dict[str, float]:
    """SUV kind -> factor on rescaled values, from the image's own Real World Value Mappings in SUV
    units (linear ones with intercept 0, the only kind a single factor can express)."""
    items = list(first.get("RealWorldValueMappingSequence", []) or [])
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (first.get(groups, []) or [])[:1]:
            items.extend(group.get("RealWorldValueMappingSequence", []) or [])
    slope = float(first.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(first.get("RescaleIntercept", 0.0) or 0.0)
    found: dict[str, float] = {}
    for item in items:
        units = item.get("MeasurementUnitsCodeSequence")
        kind = RWVM_UNITS.get(str(units[0].get("CodeValue", ""))) if units else None
        mapped_slope, mapped_intercept = item.get("RealWorldValueSlope"), item.get("RealWorldValueIntercept", 0.0)
        if kind and mapped_slope is not None and float(mapped_intercept or 0.0) == 0.0 and intercept == 0.0 and slope:
            found.setdefault(kind, float(mapped_slope) / slope)
    return found


def image_timing(dataset: Any) -> tuple[datetime | None, float | None]:
    """An image's acquisition start (AcquisitionDate, else SeriesDate, with AcquisitionTime) and its
    ActualFrameDuration (0018,1242) in seconds; None for what the header lacks."""
    time = _value(dataset, "AcquisitionTime")
    moment = None
    if time is not None:
        moment = parse_datetime(_value(dataset, "AcquisitionDate") or _value(dataset, "SeriesDate"), str(time))
    duration = _value(dataset, "ActualFrameDuration")
    return moment, (float(duration) / 1000.0 if duration is not None and float(duration) > 0 else None)


def _half_life(info: Any, path: str) -> float:
    half_life = _value(info, "RadionuclideHalfLife")
    if half_life is None or float(half_life) <= 0:
        raise SUVError(f"{path}: RadionuclideHalfLife (0018,1075, in RadiopharmaceuticalInformationSequence) "
                       "is missing; SUV cannot be computed")
    return float(half_life)


def _decay_per_image(first: Any, path: str, dose: float, info: Any,
                     frames: Mapping[str, tuple[datetime | None, float | None]] | None,
                     result: SUVFactors) -> float:
    """DecayCorrection NONE: each image's own decayed dose into `result.frame_decayed_dose_bq`;
    returns the earliest image's (the factors shown are that image's)."""
    half_life = _half_life(info, path)
    frames = dict(frames) if frames else {path: image_timing(first)}
    for image, (moment, _) in frames.items():
        if moment is None:
            raise SUVError(f"{image}: AcquisitionTime (0008,0032) is missing: with DecayCorrection NONE each "
                           "image needs its own acquisition time for its decay; SUV cannot be computed")
    earliest_path = min(frames, key=lambda image: frames[image][0])  # type: ignore[arg-type, return-value]
    earliest = frames[earliest_path][0]
    assert earliest is not None
    injected = injection_time(first, earliest, path)
    for image, (moment, duration) in frames.items():
        decay_time = (moment - injected).total_seconds()  # type: ignore[operator]
        if decay_time < 0:
            raise SUVError(f"{image}: injection ({injected}) after the acquisition ({moment}); SUV cannot be computed")
        result.frame_decayed_dose_bq[image] = frame_decayed_dose(dose, half_life, decay_time, duration)
    result.decay_time_s = (earliest - injected).total_seconds()
    result.scan_start, result.injection = earliest.isoformat(), injected.isoformat()
    doses = result.frame_decayed_dose_bq
    no_duration = [image for image, (_, duration) in frames.items() if not duration]
    result.notes.append(
        f"DecayCorrection NONE: each image's own factor, the injected activity decayed to its AcquisitionTime"
        f"{' and averaged over its ActualFrameDuration' if len(no_duration) < len(frames) else ''}; "
        f"factors shown are the earliest image's, the latest is x{doses[earliest_path] / min(doses.values()):.6g}")
    if no_duration:
        result.notes.append(f"ActualFrameDuration (0018,1242) missing in {len(no_duration)} image(s), e.g. "
                            f"{no_duration[0]}: decayed to their acquisition start only")
    return doses[earliest_path]


def suv_factors(first: Any, path: str, acquisitions: Sequence[datetime] = (),
                frames: Mapping[str, tuple[datetime | None, float | None]] | None = None) -> SUVFactors:
    """SUV factors for a PET series: `first` is a representative header (pydicom Dataset) read from
    `path`, `acquisitions` the AcquisitionDate/Time of every image of the series, `frames` each
    image's (acquisition start, duration s) by file (`image_timing`; used with DecayCorrection
    NONE, where each image has its own factor: `SUVFactors.frame_scale`).

    Raises SUVError when no SUV at all can be computed; kinds that need more (height, sex) are
    listed in `refused`."""
    units = str(_need(first, "Units", path, "whether values are Bq/ml, counts or SUV")).upper()
    result = SUVFactors(units=units)
    normalisers, result.refused = body_normalisers(first, path)
    if "bw" not in normalisers:
        raise SUVError(result.refused["bw"])
    if units == "GML":
        result.factors = {"bw": 1.0}
        result.notes.append("Units GML: values are already SUVbw; other kinds need the activity, which GML hides")
        for kind in KINDS[1:]:
            result.refused.setdefault(kind, f"{path}: Units GML (already SUVbw): {LABELS[kind]} cannot be derived")
        result.sources = {"bw": SOURCE_COMPUTED}
        return result
    if units == "CNTS":
        scale = first.get(PHILIPS_SUV_SCALE)
        if scale is None or not scale.value or float(scale.value) == 0:
            raise SUVError(f"{path}: Units CNTS and no Philips SUV Scale Factor (7053,1000); SUV cannot be computed")
        result.factors = {"bw": float(scale.value)}
        result.notes.append("Units CNTS: Philips SUV Scale Factor (7053,1000) x rescaled counts")
        for kind in KINDS[1:]:
            if kind in normalisers:  # the Philips factor is bw-normalised: rescale to the other normaliser
                result.factors[kind] = float(scale.value) * normalisers[kind] / normalisers["bw"]
        result.sources = {kind: SOURCE_COMPUTED for kind in result.factors}
        return result
    if units != "BQML":
        raise SUVError(f"{path}: Units {units!r} is not BQML, CNTS or GML; SUV cannot be computed")
    correction = str(_need(first, "DecayCorrection", path, "how the images were decay corrected")).upper()
    info = _need(first, "RadiopharmaceuticalInformationSequence", path, "the injected activity and its time")[0]
    dose = _value(info, "RadionuclideTotalDose")
    if dose is None or float(dose) <= 0:
        raise SUVError(f"{path}: RadionuclideTotalDose (0018,1074, in RadiopharmaceuticalInformationSequence) "
                       "is missing or zero; SUV cannot be computed")
    dose = float(dose)
    if correction == "ADMIN":
        decayed = dose
        result.notes.append("DecayCorrection ADMIN: images already corrected to the injection time")
    elif correction == "START":
        half_life = _half_life(info, path)
        start = scan_start(first, path, result.notes, acquisitions)
        injected = injection_time(first, start, path)
        decay_time = (start - injected).total_seconds()
        if decay_time < 0:
            raise SUVError(f"{path}: injection ({injected}) after the scan start ({start}); SUV cannot be computed")
        decayed = dose * math.pow(2.0, -decay_time / half_life)
        result.decay_time_s, result.scan_start, result.injection = decay_time, start.isoformat(), injected.isoformat()
    elif correction == "NONE":
        decayed = _decay_per_image(first, path, dose, info, frames, result)
    else:
        raise SUVError(f"{path}: DecayCorrection {correction!r} is not START, ADMIN or NONE; SUV cannot be computed")
    result.decayed_dose_bq = decayed
    result.factors = {kind: normalisers[kind] / decayed for kind in KINDS if kind in normalisers}
    result.sources = {kind: SOURCE_COMPUTED for kind in result.factors}
    for kind, factor in mapped_suv_factors(first).items():
        result.notes.append(f"{LABELS[kind]} from the image's Real World Value Mapping ({factor:.6g}; computed "
                            f"{result.factors.get(kind, float('nan')):.6g})")
        result.factors[kind] = factor
        result.sources[kind] = SOURCE_IMAGE_MAPPING
        result.refused.pop(kind, None)
    return result


@dataclass
class ValueMapping:
    """One SUV mapping of a Real World Value Mapping object: which images it covers and its factor."""

    path: str
    sop_instance_uid: str
    series_uids: list[str]
    instance_uids: set[str]
    kind: str
    slope: float
    intercept: float
    units: tuple[str, str, str]  # code value, scheme, meaning
    label: str = ""


def read_value_mappings(dataset: Any, path: str) -> tuple[list[ValueMapping], list[str]]:
    """The SUV mappings of a Real World Value Mapping object, and why any other mapping in it is
    not one (units not an SUV, a lookup table instead of a slope)."""
    mappings: list[ValueMapping] = []
    skipped: list[str] = []
    if "ReferencedImageRealWorldValueMappingSequence" not in dataset:
        raise SUVError(f"{path}: ReferencedImageRealWorldValueMappingSequence (0040,9094) is missing: "
                       "not a Real World Value Mapping object")
    series = [str(item.get("SeriesInstanceUID", "")) for item in dataset.get("ReferencedSeriesSequence", []) or []]
    sop_uid = str(dataset.get("SOPInstanceUID", ""))
    for item in dataset.ReferencedImageRealWorldValueMappingSequence:
        images = {str(ref.get("ReferencedSOPInstanceUID", "")) for ref in item.get("ReferencedImageSequence", []) or []}
        for mapping in item.get("RealWorldValueMappingSequence", []) or []:
            codes = mapping.get("MeasurementUnitsCodeSequence")
            code = codes[0] if codes else None
            value = str(code.get("CodeValue", "")) if code is not None else ""
            kind = RWVM_UNITS.get(value)
            if kind is None:
                skipped.append(f"{path}: mapping to units {value or '(none)'!r}, not an SUV")
                continue
            slope = mapping.get("RealWorldValueSlope")
            if slope is None:
                skipped.append(f"{path}: {value} mapping has no RealWorldValueSlope (0040,9225) (a lookup table): "
                               "not a single factor")
                continue
            mappings.append(ValueMapping(
                path=path, sop_instance_uid=sop_uid, series_uids=[s for s in series if s], instance_uids=images - {""},
                kind=kind, slope=float(slope), intercept=float(mapping.get("RealWorldValueIntercept", 0.0) or 0.0),
                units=(value, str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeMeaning", ""))),
                label=str(mapping.get("LUTLabel", "") or "")))
    return mappings, skipped


def apply_value_mappings(result: SUVFactors, mappings: Sequence[ValueMapping], series_uid: str,
                         instance_uids: Sequence[str]) -> None:
    """Use the mappings that cover every image of the series (`instance_uids`) in place of the
    factor of their kind; a mapping that covers only some of them, or has an intercept (which a
    single factor cannot express), is named in the notes and not used."""
    wanted = set(instance_uids)
    if mappings and result.units != "BQML":  # the mappings' factors apply to activity concentration
        result.notes.append(f"Real World Value Mapping object(s) not used: the images' Units are {result.units!r}, "
                            "not BQML")
        return
    for mapping in mappings:
        where = f"Real World Value Mapping object {mapping.sop_instance_uid} ({mapping.path})"
        covered = wanted <= mapping.instance_uids if mapping.instance_uids else series_uid in mapping.series_uids
        if not covered:
            count = len(wanted & mapping.instance_uids)
            if count or series_uid in mapping.series_uids:
                result.notes.append(f"{where} covers {count} of the {len(wanted)} images: not used")
            continue
        if mapping.intercept != 0.0:
            result.notes.append(f"{where}: intercept {mapping.intercept:g} is not 0, not a single factor: not used")
            continue
        if mapping.kind in result.sources and result.sources[mapping.kind].startswith("Real World Value Mapping object"):
            continue  # the first object found wins; the database lists them by series number
        computed = result.factors.get(mapping.kind)
        if computed:
            result.notes.append(f"{LABELS[mapping.kind]} {mapping.slope:.6g} from the {where}; computed from the "
                                f"header {computed:.6g} ({(mapping.slope / computed - 1) * 100:+.1f}%)")
        else:
            result.notes.append(f"{LABELS[mapping.kind]} {mapping.slope:.6g} from the {where}")
        result.factors[mapping.kind] = mapping.slope
        result.sources[mapping.kind] = where
        result.units_codes[mapping.kind] = mapping.units
        result.mapping_uids[mapping.kind] = mapping.sop_instance_uid
        result.refused.pop(mapping.kind, None)
