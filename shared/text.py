"""Characters Kontakt refuses in text at the edge, and cleans out of text it consumes.

One definition serves both sides: the APIs refuse a value that holds any of these
characters (422 naming the field), and consumers clean values that reached the
event store or another service's topic before the rule existed, so a read model
or the sync worker never chokes on them (PostgreSQL refuses NUL in text and jsonb).
"""

from __future__ import annotations

import re

#: C0 controls, DEL and C1 controls.
_CONTROL = "\x00-\x1f\x7f-\x9f"
#: Lone (unpaired) UTF-16 surrogates: they cannot be encoded as UTF-8.
_SURROGATE = "\ud800-\udfff"
#: Bidirectional embedding, override and isolate controls (a pair opens and closes).
_BIDI_OPEN = "\u202a\u202b\u202d\u202e\u2066\u2067\u2068"
_BIDI_CLOSE = "\u202c\u2069"
#: Invisible formatting characters that make look-alikes: Unicode's default-ignorable code
#: points of the BMP (zero-width space, joiners, word joiner, soft hyphen, BOM, directional
#: marks, the combining grapheme joiner, Hangul fillers, Mongolian and other variation
#: selectors, invisible math operators), bidi controls aside (they are judged in pairs).
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u2060-\u2065\u206a-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
#: The same outside the BMP (tag characters, more variation selectors, musical formatting),
#: kept apart so the JSON Schema pattern, which is written with \\uXXXX escapes, stays BMP.
_INVISIBLE_ASTRAL = "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"

_FORBIDDEN = re.compile(f"[{_CONTROL}{_SURROGATE}]")
_STRIPPED = re.compile(f"[{_INVISIBLE}{_INVISIBLE_ASTRAL}]")
_REMOVED = re.compile(
    f"[{_CONTROL}{_SURROGATE}{_BIDI_OPEN}{_BIDI_CLOSE}{_INVISIBLE}{_INVISIBLE_ASTRAL}]"
)


def forbidden_character(value: str, *, allow_newlines: bool = False) -> str | None:
    """A description of the first character the edge refuses in value, or None."""
    for match in _FORBIDDEN.finditer(value):
        ch = match.group()
        if allow_newlines and ch in "\n\t":
            continue
        if "\ud800" <= ch <= "\udfff":
            return f"a lone surrogate (U+{ord(ch):04X})"
        return f"a control character (U+{ord(ch):04X})"
    if _unbalanced_bidi(value):
        return "an unpaired bidirectional control"
    return None


def _unbalanced_bidi(value: str) -> bool:
    depth = 0
    for ch in value:
        if ch in _BIDI_OPEN:
            depth += 1
        elif ch in _BIDI_CLOSE:
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


def refuse_forbidden(value: str, *, allow_newlines: bool = False) -> str:
    """Value unchanged when it holds no refused character; ValueError naming the first one."""
    problem = forbidden_character(value, allow_newlines=allow_newlines)
    if problem is not None:
        raise ValueError(f"must not contain {problem}")
    return value


def edge_text(value: str, *, allow_newlines: bool = False) -> str:
    """Value checked for refused characters, invisible ones removed, whitespace trimmed."""
    return strip_invisible(refuse_forbidden(value, allow_newlines=allow_newlines)).strip()


def _escaped(chars: str) -> str:
    """A character-class body with each character written as a \\uXXXX escape."""
    return "".join(c if c == "-" else f"\\u{ord(c):04x}" for c in chars)


_NOT_SHOWN = _escaped("\x00-\x1f\x7f-\x9f" + _BIDI_OPEN + _BIDI_CLOSE + _INVISIBLE)

#: A regular expression (JSON Schema ``pattern``) of text the edge accepts: no control,
#: bidirectional or invisible character, and at least one visible one. Stricter than the
#: validator (which allows balanced bidi pairs and strips invisibles), so values generated
#: from the schema are never refused; written with escapes so the document stays ASCII.
VISIBLE_TEXT_PATTERN = f"^[^{_NOT_SHOWN}]*[^{_NOT_SHOWN}\\s][^{_NOT_SHOWN}]*$"


def strip_invisible(value: str) -> str:
    """Value without invisible formatting characters (zero-width, BOM, soft hyphen, ...)."""
    return _STRIPPED.sub("", value)


def clean_text(value: str) -> str:
    """Value with every refused or invisible character removed (for consumed data)."""
    return _REMOVED.sub("", value)


def clean_value(value: object) -> object:
    """A JSON-like value with every string in it cleaned (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value
