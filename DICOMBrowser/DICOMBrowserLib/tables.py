"""Table nodes (vtkMRMLTableNode) for the non-image results of DICOM objects: RT plan beams,
structured report measurements. Rows are plain dicts; columns keep the first row's key order
(keys seen later are appended), so a table reads the way the object lists its items."""
from __future__ import annotations

import os
from typing import Any, Sequence

from .errors import DICOMBrowserError


def add_table(scene: Any, name: str, rows: Sequence[dict[str, Any]], *, attributes: dict[str, str] | None = None) -> Any:
    """A vtkMRMLTableNode of `rows` (every value as text; missing cells empty)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = node.GetTable()
    from vtkmodules.vtkCommonCore import vtkStringArray

    for column in columns:
        array = vtkStringArray()
        array.SetName(column)
        for row in rows:
            value = row.get(column, "")
            array.InsertNextValue("" if value is None else str(value))
        table.AddColumn(array)
    node.Modified()
    for key, value in (attributes or {}).items():
        node.SetAttribute(key, value)
    return node


def table_rows(node: Any) -> list[dict[str, str]]:
    """The rows of a table node as dicts of text."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    return [{names[c]: table.GetValue(r, c).ToString() for c in range(len(names))} for r in range(table.GetNumberOfRows())]


def save_table(node: Any, path: str) -> str:
    """Write a table node as .tsv/.csv/.txt through Slicer's table storage node (plus its .schema.tsv)."""
    import slicer

    path = os.path.abspath(os.path.expanduser(str(path)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    storage = slicer.vtkMRMLTableStorageNode()
    if node.GetScene() is not None:
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(path)
    if not storage.WriteData(node):
        raise DICOMBrowserError(f"{path}: Slicer's table storage node could not write {node.GetName()}")
    return path
