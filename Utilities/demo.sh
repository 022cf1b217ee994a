#!/usr/bin/env bash
# The main job on sample data, set-up included: build a database from pydicom's bundled real
# files and a generated CT series, and print the tree. Output goes to ./demo-output/.
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
sampledata.write_series('$out/generated-ct', count=40, rows=64, columns=64, spacing=2.5,
                        patient_name='Generated^CT', patient_id='GEN001', series_description='Generated CT')"
$bin --database "$db" import "$samples" "$out/generated-ct"
$bin --database "$db" ls --level series
$bin --database "$db" db info
