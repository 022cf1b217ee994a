"""DICOMBrowserTest, the module's self-tests, run from pytest without any GUI.

The same tests run from the host window's Help > Run self-test (see test_gui_browser.py).
"""
from __future__ import annotations

import pytest

from DICOMBrowser.DICOMBrowser import DICOMBrowserTest


@pytest.mark.timeout(300)
def test_module_self_tests_pass():
    results = DICOMBrowserTest().runTest()
    names = [name for name, _, _ in results]
    assert {"test_import_sample_data", "test_load_generated_ct", "test_missing_slice_is_reported"} <= set(names)
    failures = [(name, message) for name, ok, message in results if not ok]
    assert not failures, failures
