"""Fixed facts of the domain: sampling, record and window sizes, and the 11 classes."""

from __future__ import annotations

__all__ = [
    "CLASS_KEYS",
    "DISPLAY_NAMES",
    "FS",
    "NUM_CLASSES",
    "OMEGA0_HZ",
    "RECORD_LENGTH",
    "RECORD_SECONDS",
    "SEVERITY_BANDS",
    "WINDOWS_PER_RECORD",
    "WINDOW_LENGTH",
    "class_index",
]

FS = 20_480
RECORD_SECONDS = 5.0
RECORD_LENGTH = 102_400
WINDOW_LENGTH = 20_480
WINDOWS_PER_RECORD = RECORD_LENGTH // WINDOW_LENGTH
OMEGA0_HZ = 60.0

CLASS_KEYS: tuple[str, ...] = (
    "sain",
    "desalignement",
    "desequilibre",
    "jeu",
    "lubrification",
    "cavitation",
    "usure",
    "oilwhirl",
    "mixed_misalign_imbalance",
    "mixed_wear_lube",
    "mixed_cavit_jeu",
)
DISPLAY_NAMES: dict[str, str] = {
    "sain": "normal",
    "desalignement": "misalignment",
    "desequilibre": "imbalance",
    "jeu": "looseness",
    "lubrification": "lubrication",
    "cavitation": "cavitation",
    "usure": "wear",
    "oilwhirl": "oil whirl",
    "mixed_misalign_imbalance": "misalignment + imbalance",
    "mixed_wear_lube": "wear + lubrication",
    "mixed_cavit_jeu": "cavitation + looseness",
}
NUM_CLASSES = len(CLASS_KEYS)

# Severity bands: [low, high) except the last, which includes 1.0.
SEVERITY_BANDS: dict[str, tuple[float, float]] = {
    "incipient": (0.20, 0.45),
    "mild": (0.45, 0.70),
    "moderate": (0.70, 0.90),
    "severe": (0.90, 1.00),
}


def class_index(key: str) -> int:
    """Return the label of a class key; raises ``KeyError`` naming the valid keys."""
    try:
        return CLASS_KEYS.index(key)
    except ValueError:
        raise KeyError(f"unknown fault type {key!r}; valid keys: {', '.join(CLASS_KEYS)}") from None
