"""Where an imported record's label comes from, and what happens when sources disagree.

Precedence: a label given with the request, then a label variable in the file (top level,
then a field of its metadata struct), then the folders below the import root (nearest
first), then the file name. Names are matched by whole tokens, so ``sain/mesure_jeudi.mat``
names only ``sain`` (``jeudi`` is not ``jeu``) and ``saint`` names nothing. A class that
two sources give differently is a failure naming both, never a silent choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.domain import CLASS_KEYS, DISPLAY_NAMES
from pipeline.errors import InvalidInput, MatFileError

__all__ = ["LABEL_NAMES", "check_label", "label_value", "name_keys", "name_sources",
           "resolve_label", "variable_sources"]

LABEL_NAMES = ("label", "fault_type", "class", "fault")
# Letters and digits are separate tokens: "jeu01" holds "jeu", "jeudi" does not.
_TOKEN = re.compile(r"[a-z]+|[0-9]+")
_KEY_TOKENS = {key: tuple(_TOKEN.findall(key)) for key in CLASS_KEYS}

Source = tuple[str, str]  # (where the label came from, class key)


def check_label(label: str | None) -> None:
    """Refuse a label given with a request that is not a class key."""
    if label is not None and label not in CLASS_KEYS:
        raise InvalidInput(f"label {label!r} is not a class key ({', '.join(CLASS_KEYS)})")


def name_keys(name: str) -> list[str]:
    """Class keys that ``name`` holds as whole tokens, in order of appearance.

    A key inside a longer one is not counted: ``mixed_cavit_jeu`` names one class, not
    also ``jeu``.
    """
    tokens = _TOKEN.findall(name.lower())
    spans = [(start, start + len(parts), key) for key, parts in _KEY_TOKENS.items()
             for start in range(len(tokens) - len(parts) + 1)
             if tuple(tokens[start:start + len(parts)]) == parts]
    kept = [(a, b, key) for a, b, key in spans
            if not any(c <= a and b <= d and d - c > b - a for c, d, _ in spans)]
    return list(dict.fromkeys(key for _, _, key in sorted(kept)))


def name_sources(path: Path, root: Path | None) -> list[Source]:
    """Labels named by the folders below ``root`` (nearest first), then by the file name.

    Without ``root`` only the file name is looked at: folders above an import root say
    nothing about its files.
    """
    folders: tuple[str, ...] = ()
    if root is not None:
        try:
            folders = path.parent.relative_to(root).parts
        except ValueError:
            folders = ()
    sources = [(f"folder {part!r}", key) for part in reversed(folders) for key in name_keys(part)]
    return sources + [(f"file name {path.name!r}", key) for key in name_keys(path.stem)]


def label_value(value: Any, source: str, path: Path) -> str:
    """Turn a label variable's value (key, display name or index) into a class key."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in CLASS_KEYS:
            return text
        by_name = {name.lower(): key for key, name in DISPLAY_NAMES.items()}
        if text in by_name:
            return by_name[text]
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(CLASS_KEYS):
        return CLASS_KEYS[value]
    raise MatFileError(f"label {value!r} in {source} is not a class key or index "
                       f"(valid keys: {', '.join(CLASS_KEYS)}): {path}")


def variable_sources(top: Mapping[str, Any], struct: Mapping[str, Any] | None,
                     struct_name: str | None, path: Path) -> list[Source]:
    """Labels from label variables: top-level ones first, then the metadata struct's fields.

    Values must already be JSON-safe (``json_safe``); empty struct fields are skipped.
    """
    sources = []
    for wanted in LABEL_NAMES:
        for name, value in top.items():
            if name.lower() == wanted:
                where = f"variable {name!r}"
                sources.append((where, label_value(value, where, path)))
    for wanted in LABEL_NAMES:
        for name, value in (struct or {}).items():
            if name.lower() == wanted and value not in (None, ""):
                where = f"field {name!r} of {struct_name!r}"
                sources.append((where, label_value(value, where, path)))
    return sources


def resolve_label(sources: list[Source], path: Path) -> str | None:
    """The first source's class (None without any); refuse if another source differs."""
    if not sources:
        return None
    first, key = sources[0]
    for where, other in sources[1:]:
        if other != key:
            raise MatFileError(f"label sources disagree: {first} says {key!r} but {where} "
                               f"says {other!r}: {path}")
    return key
