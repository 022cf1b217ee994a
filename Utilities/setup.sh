#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (Python 3.11) for DICOMBrowser: Debian packages, then a
# virtual environment in .venv with the project installed (editable). Safe to run again.
#   Utilities/setup.sh          what the main job needs
#   Utilities/setup.sh --test   also the peers the tests use (DCMTK, Orthanc, dicom3tools, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Off-screen VTK rendering (EGL/OSMesa) and Qt's platform plugins; a C compiler for the header
# scan's walk in C (DICOMBrowserLib/native; without it scans walk in Python, slower on long vendor headers).
packages=(gcc libc6-dev libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libosmesa6 libxcb-cursor0
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libxkbcommon0 libfontconfig1 fonts-dejavu-core
  libdbus-1-3 libglib2.0-0 xvfb xauth)
if [ "$want_test" = 1 ]; then
  packages+=(dcmtk orthanc orthanc-dicomweb orthanc-postgresql postgresql dicom3tools libgdcm-tools dcm2niix
    sqlite3 plastimatch openssl)
fi
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" != 0 ] && SUDO="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq </dev/null
  # Orthanc's package would start a system service; our tests start their own instances.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip </dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[test]" </dev/null
else
  .venv/bin/python -m pip install -q -e ".[gui]" </dev/null
fi
# pip compiles the packages it installs, not an editable checkout: without this every command
# compiles our ~150 modules again (0.15 s of each CLI call) wherever PYTHONDONTWRITEBYTECODE is set
.venv/bin/python -m compileall -q -j 0 DICOMBrowser DICOMPlugins >/dev/null
# the header scan's walk in C, next to its source (a missing compiler is reported, not fatal)
.venv/bin/python -m DICOMBrowser.DICOMBrowserLib.nativewalk --build </dev/null
