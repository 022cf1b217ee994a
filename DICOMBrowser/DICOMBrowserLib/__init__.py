"""GUI-free library behind the DICOMBrowser module.

Imports flow one way: widgets -> DICOMBrowser.DICOMBrowser (Logic) -> this library ->
pydicom / pynetdicom / numpy / vtk / slicer-core. Nothing here imports Qt.
"""
