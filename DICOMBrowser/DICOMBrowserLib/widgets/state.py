"""What the browser remembers between runs: window layout, column widths and sort, last folder and node.

One INI file beside the user configuration (`config.user_config_file()`), not the platform's
registry: it follows $XDG_CONFIG_HOME, so tests and several users' set-ups stay apart, and a
user can delete it to get the default layout back.
"""
from __future__ import annotations

from typing import Any

from PySide6 import QtCore


def gui_settings() -> QtCore.QSettings:
    from .. import config

    path = config.user_config_file().parent / "gui.ini"
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


def remember(key: str, value: Any) -> None:
    settings = gui_settings()
    settings.setValue(key, value)
    settings.sync()


def recall(key: str, default: Any = None) -> Any:
    value = gui_settings().value(key, default)
    return default if value is None else value


def recall_bool(key: str, default: bool) -> bool:
    value = recall(key, default)
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
