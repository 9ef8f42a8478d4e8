"""Which programming language a piece of code is written in.

The rule, most reliable evidence first: a language the requester named (normalised:
``py`` → ``python``), the file name's extension (or a well-known file name such as
``Dockerfile``), the shebang line, and last the code itself (keywords and shapes typical of
one language). Names are lower-case (``python``, ``javascript``, ``typescript``, ``go``, ...);
``text`` when nothing points anywhere.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

UNKNOWN = "text"

_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
    "rb": "ruby",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "c++": "cpp",
    "cs": "csharp",
    "c#": "csharp",
    "kt": "kotlin",
    "yml": "yaml",
}

_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".rb": "ruby",
    ".php": "php",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".swift": "swift",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
    ".html": "html",
    ".css": "css",
    ".md": "markdown",
}

_FILE_NAMES = {"dockerfile": "dockerfile", "makefile": "make", "rakefile": "ruby"}

_SHEBANGS = (
    ("python", "python"),
    ("node", "javascript"),
    ("deno", "typescript"),
    ("ruby", "ruby"),
    ("php", "php"),
    ("bash", "shell"),
    ("zsh", "shell"),
    ("sh", "shell"),
)

#: Content heuristics, checked in order; the first pattern found decides.
_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (language, re.compile(pattern, re.MULTILINE))
    for language, pattern in (
        ("go", r"^package \w+\s*$(?s:.*)^func "),
        ("rust", r"^\s*(pub\s+)?fn \w+.*->|^\s*let mut |^use \w+::"),
        ("java", r"^\s*(public|private)\s+(static\s+)?(final\s+)?class \w+"),
        ("cpp", r"^#include\s*<(iostream|vector|string|memory)>|\bstd::"),
        ("c", r"^#include\s*[<\"]"),
        ("python", r"^\s*(async\s+)?def \w+\s*\(.*\)\s*(->.*)?:\s*$|^(from [\w.]+ )?import \w+"),
        ("python", r"^\s*class \w+(\(.*\))?:\s*$|^if __name__ == ['\"]__main__['\"]:"),
        ("typescript", r"^\s*(export\s+)?(interface|type) \w+|:\s*(string|number|boolean)\b"),
        ("javascript", r"\bfunction\s*\w*\s*\(|\b(const|let|var) \w+ = |=>|\brequire\("),
        ("php", r"<\?php"),
        ("ruby", r"^\s*(def \w+[?!]?\s*$|require ['\"]|end\s*$)"),
        ("sql", r"(?i)^\s*(select .+ from|create table|insert into|update \w+ set)\b"),
        ("shell", r"^\s*(echo|export|fi|done|esac)\b"),
    )
)


def normalize_language(name: str) -> str:
    """The canonical lower-case name for ``name`` (``"Py"`` → ``"python"``)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key) or UNKNOWN


def language_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    path = PurePosixPath(filename.replace("\\", "/"))
    return _EXTENSIONS.get(path.suffix.lower()) or _FILE_NAMES.get(path.name.lower())


def language_from_shebang(code: str) -> str | None:
    first = code.lstrip("\ufeff").split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    words = re.findall(r"[a-z]+", first[2:].lower())
    for needle, language in _SHEBANGS:
        if any(word == needle or word.startswith(needle) for word in words[-2:]):
            return language
    return None


def language_from_content(code: str) -> str | None:
    sample = code[:20_000]
    for language, pattern in _SHAPES:
        if pattern.search(sample):
            return language
    return None


def detect_language(code: str, filename: str | None = None, declared: str | None = None) -> str:
    """The language of ``code``: declared, else by file name, shebang, then content."""
    if declared and declared.strip():
        return normalize_language(declared)
    return (
        language_from_filename(filename)
        or language_from_shebang(code)
        or language_from_content(code)
        or UNKNOWN
    )


__all__ = [
    "UNKNOWN",
    "detect_language",
    "language_from_content",
    "language_from_filename",
    "language_from_shebang",
    "normalize_language",
]
