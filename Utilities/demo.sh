#!/usr/bin/env bash
# The main job on sample data, set-up included: build a database from pydicom's bundled real
# files and a generated CT series, print the tree, then examine the CT through the plugins,
# load it into a volume node, save NRRD and NIfTI, render slice views and a screenshot of the browser.
# Output goes to ./demo-output/ (or the folder given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
Utilities/setup.sh
out="${1:-demo-output}"
rm -rf "$out"
mkdir -p "$out"
db="$out/database"
bin=.venv/bin/dicombrowser
samples=$(.venv/bin/python -c "from DICOMBrowser.DICOMBrowserLib import sampledata; print(sampledata.pydicom_sample_folder())")
.venv/bin/python -c "
from DICOMBrowser.DICOMBrowserLib import sampledata
sampledata.write_series('$out/generated-ct', count=60, rows=128, columns=128, spacing=2.5,
                        pixel_spacing=(1.6, 1.6), pixels=sampledata.head_phantom(60),
                        patient_name='Generated^CT', patient_id='GEN001', series_description='Generated CT')"
echo "== import (pydicom's bundled files are partly broken on purpose: those are reported and skipped)"
$bin --database "$db" import --no-progress "$samples" "$out/generated-ct"
echo "== the database, series level"
$bin --database "$db" tree
$bin --database "$db" db verify
$bin --database "$db" db info
series=$($bin --database "$db" ls --level series --json | .venv/bin/python -c "import json,sys; print(next(s['SeriesInstanceUID'] for s in json.load(sys.stdin) if s['SeriesDescription']=='Generated CT'))")
echo "== what the plugins offer for the generated CT ($series)"
$bin --database "$db" examine "$series"
echo "== load it into a volume node, save NRRD, NIfTI and a screenshot"
$bin --database "$db" load "$series" --output "$out/generated-ct.nrrd" --screenshot "$out/generated-ct.png"
$bin --database "$db" load "$series" --output "$out/generated-ct.nii.gz"
echo "== the browser with the CT loaded (Xvfb), screenshot of the whole window"
xvfb-run -a -s "-screen 0 1280x1024x24" $bin --database "$db" gui --load "$series" --screenshot "$out/browser.png"
ls -l "$out"
