"""Names of what a batch run writes, and how an input's name is shown in the manifest.

A transcript's name is its recording's name with the format's suffix appended. Everything a run
writes is named in text (UTF-8), as object names and the manifest's JSON must be: a local name
that is not UTF-8 gives its outputs its shown name, undecodable bytes as `\\xNN` escapes
(b"caf\\xe9.wav" → `caf\\xe9.wav.srt`, with a literal backslash). A file name may
hold at most NAME_MAX bytes (255 on Linux file systems), and a local write first goes to a
temporary name longer than the target's, so a long recording name (249 bytes, say) would be
transcribed and then fail to be written, on every run. Names whose last part would not fit with
the temporary suffix are shortened: as many whole characters of the name as fit, then `~` and a
hash of the full name, then the suffix. The hash makes the result stable from run to run and
distinct for names that share a long beginning; the manifest's `outputs` map each input to its
transcripts.
"""

from __future__ import annotations

import base64
from hashlib import sha256

NAME_MAX = 255
# What LocalFolder.write adds to a name for its temporary file: "." + name + "." + 8 random
# characters + ".partial".
TEMPORARY_OVERHEAD = len(".") + len(".") + 8 + len(".partial")
LONGEST_NAME = NAME_MAX - TEMPORARY_OVERHEAD
_HASH_CHARACTERS = 16


def fitting_name(path: str, suffix: str) -> str:
    """`path + suffix` in text (`shown_name`), with its last part shortened when it would not fit
    (see the module)."""
    folder, slash, name = shown_name(path).rpartition("/")
    whole = name + suffix
    if len(whole.encode()) <= LONGEST_NAME:
        return folder + slash + whole
    tag = "~" + sha256(name.encode()).hexdigest()[:_HASH_CHARACTERS]
    room = LONGEST_NAME - len(tag.encode()) - len(suffix.encode())
    kept = name.encode()[:room].decode(errors="ignore")  # never half a character
    return f"{folder}{slash}{kept}{tag}{suffix}"


def raw_name(path: str) -> bytes:
    """The bytes the file system has for `path` (a local name that is not UTF-8 arrives with
    its undecodable bytes as surrogates, as os.fsdecode makes them)."""
    return path.encode("utf-8", "surrogateescape")


def is_text(path: str) -> bool:
    """Whether the name is valid UTF-8, and so can be written to JSON, GCS and the terminal as is."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(path: str) -> str:
    """The name as text: undecodable bytes as `\\xNN` escapes (the manifest's `path` for such a name)."""
    return raw_name(path).decode("utf-8", "backslashreplace")


def encoded_name(path: str) -> str | None:
    """The raw bytes in base64 when the name is not UTF-8 (the manifest's `path_bytes`), else None."""
    return None if is_text(path) else base64.b64encode(raw_name(path)).decode("ascii")
