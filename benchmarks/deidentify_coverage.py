"""How much of PS3.15 Table E.1-1 a de-identifier carries out on real files: ours vs dicognito.

For each corpus object, every attribute of the table that has a value is looked up in the
output; one left with its original value (when the table's action is not K) is counted, and so
is every private element left. dicognito is not a dependency: install it into a separate
environment with this project (pip install dicognito) to run the comparison; without it only our
engine is measured. Usage: python benchmarks/deidentify_coverage.py [CORPUS]
"""
from __future__ import annotations

import collections
import copy
import sys
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from DICOMBrowser.DICOMBrowserLib.deidentify import Deidentifier, DeidentifyOptions, table_action  # noqa: E402


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted((corpus / "slicer_ct_head").rglob("*.dcm"))[:5] + sorted((corpus / "ge_t1").rglob("*"))[:5]
    files += [p for p in sorted((corpus / "orthanc_tests" / "Database").rglob("*.dcm")) if "Issue" not in p.name][:60]
    files += sorted((corpus / "philips_dwi").rglob("*.dcm"))[:3]
    return [p for p in files if p.is_file()]


def engines() -> dict:
    ours = Deidentifier(DeidentifyOptions(key="measure", allow_burned_in=True))
    found = {"dicombrowser": ours.deidentify}
    try:
        import dicognito.anonymizer

        def cognito(ds):
            ds = copy.deepcopy(ds)
            dicognito.anonymizer.Anonymizer(seed="measure").anonymize(ds)
            return ds

        found["dicognito"] = cognito
    except ImportError:
        print("dicognito not installed: measuring our engine only")
    return found


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "corpus"
    files = corpus_files(corpus)
    present = collections.Counter()
    measured = engines()
    left = {name: collections.Counter() for name in measured}
    private_left = collections.Counter()
    failures: dict[str, list[str]] = {name: [] for name in measured}
    objects = 0
    for path in files:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        if "SOPInstanceUID" not in ds:
            continue
        objects += 1
        for name, engine in measured.items():
            try:
                out = engine(ds)
            except (ValueError, TypeError, AttributeError) as error:  # an engine that gives up on a file
                failures[name].append(f"{path.name}: {type(error).__name__}")
                continue
            private_left[name] += sum(1 for e in out if e.tag.is_private)
            for element in ds:
                action = table_action(int(element.tag))
                if action is None or action == "K" or element.VR == "SQ" or element.value in (None, "", b""):
                    continue
                if name == "dicombrowser":
                    present[action] += 1
                if element.tag in out and out[element.tag].value == element.value:
                    left[name][element.keyword] += 1
    print(f"{objects} objects, {sum(present.values())} table attributes with a value: {dict(present)}")
    for name, counter in left.items():
        print(f"{name}: {sum(counter.values())} left unchanged ({len(counter)} kinds), "
              f"{private_left[name]} private elements left, {len(failures[name])} objects failed "
              f"{failures[name][:3]}; most: {counter.most_common(8)}")


if __name__ == "__main__":
    main()
