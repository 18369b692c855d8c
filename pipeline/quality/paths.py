"""What a quality run may touch: paths confined to configured roots, safe pytest expressions."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import InvalidInput, UnsafePath

__all__ = ["MAX_EXPRESSION_LENGTH", "check_expression", "confine_path"]

MAX_EXPRESSION_LENGTH = 200

# Names, and/or/not, parentheses, brackets (parametrize ids), spaces, dashes and dots:
# everything a -m or -k expression needs, nothing a shell or an option parser would act on.
_ALLOWED = re.compile(r"[A-Za-z0-9_ ()\[\].\-]")


def confine_path(path: str | os.PathLike[str], roots: Sequence[Path]) -> Path:
    """Resolve ``path`` and return it if it lies under one of ``roots``; it must exist.

    A relative path is taken from the first root. Symlinks are resolved before the check,
    so a link that points out of every root is refused like ``..`` or an absolute path
    elsewhere. The returned path is absolute, so it can never be read as a command option.

    Raises:
        UnsafePath: the path escapes every root (``..``, an absolute path, a symlink).
        InvalidInput: the path is empty, holds a NUL byte, or does not exist.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InvalidInput("path is empty")
    if "\x00" in text:
        raise InvalidInput(f"path {text!r} contains a NUL byte")
    if not roots:
        raise UnsafePath("no quality roots are configured, so no path is allowed")
    bases = [Path(root).resolve() for root in roots]
    candidate = Path(text)
    try:
        # Not strict: confinement is judged first, so an escape is refused as one even
        # where its target does not exist (and the error tells nothing about that target).
        resolved = (candidate if candidate.is_absolute() else bases[0] / candidate).resolve()
    except (OSError, RuntimeError) as error:
        # RuntimeError: a symlink loop.
        raise UnsafePath(f"path {text!r} cannot be resolved: {error}") from None
    if any(resolved == base or base in resolved.parents for base in bases):
        if not resolved.exists():
            raise InvalidInput(f"path {text!r} does not exist")
        return resolved
    allowed = ", ".join(str(base) for base in bases)
    if ".." in candidate.parts:
        raise UnsafePath(f"path {text!r} escapes the quality roots through '..' (allowed: {allowed})")
    if candidate.is_absolute() and not _is_symlinked(candidate):
        raise UnsafePath(f"path {text!r} is outside the quality roots (allowed: {allowed})")
    raise UnsafePath(f"path {text!r} resolves to {str(resolved)!r}, outside the quality roots (allowed: {allowed})")


def _is_symlinked(path: Path) -> bool:
    """True when ``path`` or one of its parents is a symlink (the check follows it)."""
    return any(part.is_symlink() for part in (path, *path.parents))


def check_expression(expression: str | None, *, what: str = "expression") -> str | None:
    """Return a pytest ``-m``/``-k`` expression if it is safe, ``None`` if empty.

    Only names, ``and``/``or``/``not``, parentheses, brackets, spaces, dashes and dots
    pass; shell syntax (``;``, ``$(``, quotes, pipes, redirections) never does, even
    though no shell runs it: such an expression is a sign of an injection attempt.

    Raises:
        InvalidInput: the expression is too long, starts with ``-`` or holds another character.
    """
    if expression is None or not expression.strip():
        return None
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidInput(f"{what} is longer than {MAX_EXPRESSION_LENGTH} characters")
    for position, char in enumerate(expression):
        if not _ALLOWED.fullmatch(char):
            raise InvalidInput(
                f"{what} {expression!r} contains {char!r} at position {position}; allowed are names, "
                "and/or/not, parentheses, brackets, spaces, '-' and '.'"
            )
    if expression.lstrip().startswith("-"):
        # pytest's option parser would read a leading dash as an option, not a value.
        raise InvalidInput(f"{what} {expression!r} must not start with '-'")
    return expression.strip()
