"""DICOMBrowser: a 3D Slicer-style DICOM module usable from Python, a CLI and a Qt browser."""
__version__ = "0.1.0"
