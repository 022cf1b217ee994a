"""plan_dwi made once per header scan: with a ScanIndex (one `convert` or `load` of a folder) the
plan of the same files is built once and each caller gets its own copy; require_diffusion's
refusal and warning come out as when the plan is made afresh; anything else is planned anew."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib.diffusion import series
from DICOMBrowser.DICOMBrowserLib.errors import LoadError
from DICOMBrowser.DICOMBrowserLib.scanindex import ScanIndex, plugin_tags


def _index(files):
    return ScanIndex.build([str(f) for f in files], plugin_tags([]), workers=1)


def _summary(plan):
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    fields["volumes"] = [[(r.file_index, r.frame_index) for r in volume] for volume in plan.volumes]
    for name in ("bvalues", "gradients_lps", "ijk_to_lps"):
        fields[name] = np.asarray(fields[name]).tolist()
    return fields


@pytest.fixture
def counted_headers(monkeypatch):
    calls = []
    real = series._headers

    def counting(files, database=None):
        calls.append(list(files))
        return real(files, database)

    monkeypatch.setattr(series, "_headers", counting)
    series._PLANS.clear()
    yield calls
    series._PLANS.clear()


def _mosaic_files(corpus):
    folder = corpus / "fmri_timeseries/In/Siemens/E11"
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert files, folder
    return files


def test_a_plan_of_one_scan_is_built_once_and_copied(corpus, counted_headers):
    files = _mosaic_files(corpus)
    index = _index(files)
    first = series.plan_dwi(files, require_diffusion=False, database=index)
    second = series.plan_dwi(files, require_diffusion=False, database=index)
    assert len(counted_headers) == 1
    assert _summary(first) == _summary(second)
    second.volumes.reverse()  # the mosaic reader sorts its copy: the others keep their order
    second.warnings.append("mine")
    assert series.plan_dwi(files, require_diffusion=False, database=index).volumes == first.volumes
    assert "mine" not in series.plan_dwi(files, require_diffusion=False, database=index).warnings
    assert len(counted_headers) == 1


def test_require_diffusion_refuses_as_a_fresh_plan_does(corpus, counted_headers):
    """An fMRI mosaic has no diffusion information: the diffusion plugin's plan refuses it,
    before or after the scalar plugin's plan of the same files, with the same message."""
    files = _mosaic_files(corpus)
    index = _index(files)
    with pytest.raises(LoadError) as fresh:
        series.plan_dwi(files, require_diffusion=True, database=index)
    series.plan_dwi(files, require_diffusion=False, database=index)
    with pytest.raises(LoadError) as reused:
        series.plan_dwi(files, require_diffusion=True, database=index)
    assert str(fresh.value) == str(reused.value) and "no diffusion information" in str(fresh.value)


def test_all_b0_warning_and_dwi_plans_equal_fresh_ones(ge_files, corpus, counted_headers):
    """A DWI planned through the memo equals one planned without it (no index), both ways round;
    so does the b = 0 series' warning list with require_diffusion=True."""
    files = [str(p) for p in ge_files]
    index = _index(files)
    for require in (False, True, False):
        assert _summary(series.plan_dwi(files, require, index))["warnings"] == \
            _summary(series.plan_dwi(files, require, None))["warnings"]
        memo, fresh = _summary(series.plan_dwi(files, require, index)), _summary(series.plan_dwi(files, require))
        fresh["pixel_locations"] = memo["pixel_locations"]  # the database's locations are its own
        assert memo == fresh
    ge_b = index.file_values(files, ["0043,1039"])
    b0 = [f for f in files if float(ge_b[f]["0043,1039"].split("\\")[0]) % 100000 == 0]
    assert len(b0) == 2
    series._PLANS.clear()
    assert series.plan_dwi(b0, True, index).warnings == series.plan_dwi(b0, True, None).warnings
    assert "no diffusion-weighted volume (all b = 0)" in series.plan_dwi(b0, True, index).warnings
    assert "no diffusion-weighted volume (all b = 0)" not in series.plan_dwi(b0, False, index).warnings


def test_other_indexes_and_databases_plan_anew(corpus, counted_headers):
    files = _mosaic_files(corpus)
    series.plan_dwi(files, require_diffusion=False, database=_index(files))
    series.plan_dwi(files, require_diffusion=False, database=_index(files))
    series.plan_dwi(files, require_diffusion=False)
    series.plan_dwi(files, require_diffusion=False)
    assert len(counted_headers) == 4
