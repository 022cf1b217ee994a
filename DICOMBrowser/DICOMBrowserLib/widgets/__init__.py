"""The Qt (PySide6) layer: the only package besides DICOMBrowser.py that imports Qt.

Every button here calls DICOMBrowserLogic; no DICOM parsing and no SQL happen in widgets.
"""
