"""Prompts as A1111, Forge and Civitai write them: `<lora:name:weight>` tags and `(word:1.2)` weights.

Why here: a prompt pasted from Civitai carries its LoRAs and emphasis in the text. The tags become LoRA refs
(the contract's own field) and leave the prompt; the emphasis is translated into compel's syntax, which the
renderer uses only when a prompt needs it (weights, or more than 77 tokens), so a plain prompt is encoded
exactly as before.

A1111's emphasis: `(text)` x1.1, `((text))` x1.21, `[text]` /1.1, `(text:1.5)` x1.5; `\\(` is a literal
parenthesis. compel writes the same as `(text)1.1`, `(text)0.909`, `(text)1.5`.
"""

from __future__ import annotations

import re

from studio.values import ParamsError, parse_float

LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
_EMPHASIS = re.compile(r"(?<!\\)[()\[\]]")


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(the prompt without its `<lora:name:weight>` tags, [(name, weight), ...]); a tag's weight defaults to 1."""
    found = []
    for m in LORA_TAG.finditer(prompt):
        weight = m.group(2)
        found.append((m.group(1).strip(), parse_float(weight, f"weight of <lora:{m.group(1)}>") if weight else 1.0))
    clean = LORA_TAG.sub("", prompt)
    clean = re.sub(r"\s*,\s*(,\s*)+", ", ", clean)  # "a, <lora:x>, b" -> "a, b"
    return re.sub(r"\s{2,}", " ", clean).strip(" ,"), found


def has_emphasis(prompt: str) -> bool:
    return bool(_EMPHASIS.search(prompt))


def to_compel(prompt: str) -> str:
    """A1111 emphasis -> compel syntax; ParamsError for unbalanced brackets."""
    out, i = _group(prompt, 0, None)
    if i != len(prompt):
        raise ParamsError(f"unbalanced {prompt[i]!r} in the prompt at character {i + 1}")
    return out


def _group(text: str, i: int, close: str | None) -> tuple[str, int]:
    """Translate text from i up to the closing bracket `close` (or the end); returns (compel text, index)."""
    parts: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            parts.append(text[i:i + 2])
            i += 2
        elif ch in "([":
            inner, i = _group(text, i + 1, ")" if ch == "(" else "]")
            if ch == "(":
                body, sep, weight = inner.rpartition(":")
                if sep and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", weight):
                    parts.append(f"({body}){float(weight):g}")
                else:
                    parts.append(f"({inner})1.1")
            else:
                parts.append(f"({inner})0.909")
        elif ch in ")]":
            if ch != close:
                raise ParamsError(f"unbalanced {ch!r} in the prompt at character {i + 1}")
            return "".join(parts), i + 1
        else:
            parts.append(ch)
            i += 1
    if close is not None:
        raise ParamsError(f"a {'(' if close == ')' else '['} in the prompt is never closed")
    return "".join(parts), i
