#!/usr/bin/env bash
# The whole test suite, set-up included: Debian packages, .venv, then two pytest passes:
# headless (Qt offscreen) for everything but the tests that embed VTK in Qt, then those under Xvfb.
# Extra arguments go to both pytest passes.
set -uo pipefail
cd "$(dirname "$0")/.."
Utilities/setup.sh --test || exit 1

# pytest exits with 5 when a selection is empty; that is not a failure here.
run_pytest() { "$@"; local rc=$?; [ $rc = 5 ] && rc=0; return $rc; }

export PYTHONUNBUFFERED=1
.venv/bin/ruff check . </dev/null
lint=$?
QT_QPA_PLATFORM=offscreen run_pytest .venv/bin/python -m pytest -m "not x11" "$@" </dev/null
headless=$?
run_pytest xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest -m x11 "$@" </dev/null
x11=$?
# The network tests again on pynetdicom's own DIMSE path (networking/fastpath switched off): the
# fallback must pass as well, the day a pynetdicom release is not on the fast path's VERIFIED list.
DICOMBROWSER_FASTPATH=0 QT_QPA_PLATFORM=offscreen run_pytest .venv/bin/python -m pytest \
  -m "network and not x11 and not slow and not fastpath_explicit" "$@" </dev/null
fallback=$?
echo "ruff: exit $lint; headless pass: exit $headless; x11 pass: exit $x11; network without the fast path: exit $fallback"
[ $lint = 0 ] && [ $headless = 0 ] && [ $x11 = 0 ] && [ $fallback = 0 ]
