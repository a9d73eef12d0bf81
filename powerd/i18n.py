"""Reports in the lab's language: every user-facing report string from one gettext catalogue.

Why: K-Perf and TTA labs sign Korean reports (issue 14 item 5). The msgids are the English
strings themselves (GNU gettext's convention), so English needs no catalogue and a missing
translation can never hide a figure. The catalogue is the standard gettext domain ``powerd``
under ``powerd/locale/<lang>/LC_MESSAGES/``: the ``.po`` files are the source, the ``.mo`` files
are compiled from them (``python -m powerd.i18n compile``) and committed, so the hatchling wheel
ships them as plain package data without a build hook; ``tests/report/test_i18n.py`` fails when a
``.mo`` is stale or a marked string has no Korean entry.

Three markers, all found by the extractor (``extract_msgids``):

- ``_("...")`` translates now, into the active language (``set_lang`` / ``language``);
- ``N_("...")`` only marks a string for the catalogue (e.g. a table of column names);
- ``R_("...")`` marks a *reason template* (``str.format`` fields): code that writes a reason into
  the result JSON formats the English template, because contract 2 is never translated. The
  renderers translate such a stored reason with ``tr_reason``, which matches it back against the
  registered templates and formats the translated one with the same (translated) fields.

What is never translated: numbers, units, channel ids, flag names, JSON keys, contract-2 JSON.
The language comes from ``--lang`` (``add_lang_option``), else ``$POWERD_LANG``, else English.
"""

from __future__ import annotations

import argparse
import ast
import gettext
import importlib
import os
import re
import string
import struct
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from powerd.errors import PowerdError

DOMAIN = "powerd"
LANGS = ("en", "ko")
ENV = "POWERD_LANG"
LOCALE_DIR = Path(__file__).resolve().with_name("locale")
MARKERS = ("_", "N_", "R_")

# the modules whose module-level R_() constants are the reasons a result may hold; tr_reason
# imports them, so a stored result renders translated in a fresh process (a test checks that
# every R_ in the package is in one of these)
REASON_MODULES = (
    "powerd.verify.verdict",
    "powerd.verify.stability",
    "powerd.crosscheck",
    "powerd.compare",
)

_state: dict[str, object] = {"lang": "en", "tr": gettext.NullTranslations()}
_REASONS: list[str] = []


def N_(msgid: str) -> str:
    """Mark ``msgid`` for the catalogue without translating it (returns it unchanged)."""
    return msgid


def R_(template: str) -> str:
    """Mark and register a reason template (``str.format`` fields); returns it unchanged, so the
    JSON gets English. ``tr_reason`` translates the formatted text later."""
    if template not in _REASONS:
        _REASONS.append(template)
    return template


def _(msgid: str) -> str:
    """``msgid`` in the active language."""
    tr = _state["tr"]
    assert isinstance(tr, gettext.NullTranslations)
    return tr.gettext(msgid)


def lang() -> str:
    """The active language code (``en`` or ``ko``): also the HTML ``lang`` attribute."""
    return str(_state["lang"])


def normalise(value: str) -> str:
    """``ko``, ``ko_KR``, ``ko-KR.UTF-8`` → ``ko``; an unknown language is a PowerdError."""
    code = re.split(r"[_.@-]", value.strip().lower(), maxsplit=1)[0]
    if code not in LANGS:
        raise PowerdError(
            f"unknown report language {value!r} (from --lang or ${ENV}); one of: "
            + ", ".join(LANGS)
        )
    return code


@cache
def translations(code: str) -> gettext.NullTranslations:
    """The catalogue of one language (English: the msgids themselves)."""
    if code == "en":
        return gettext.NullTranslations()
    try:
        return gettext.translation(DOMAIN, LOCALE_DIR, [code])
    except OSError as err:
        raise PowerdError(
            f"no {code!r} catalogue under {LOCALE_DIR} ({err}); reinstall powerd"
        ) from None


def set_lang(code: str) -> None:
    """Make ``code`` (normalised) the language of every string rendered from now on."""
    code = normalise(code)
    _state["tr"], _state["lang"] = translations(code), code


@contextmanager
def language(code: str) -> Iterator[None]:
    """Render in ``code`` inside the block, then restore the previous language."""
    before = lang()
    set_lang(code)
    try:
        yield
    finally:
        set_lang(before)


def resolve(value: str | None) -> str:
    """The language to use: ``--lang`` if given, else ``$POWERD_LANG``, else English."""
    if value:
        return normalise(value)
    env = os.environ.get(ENV, "").strip()
    return normalise(env) if env else "en"


def add_lang_option(parser: argparse.ArgumentParser) -> None:
    """``--lang`` on a command that prints or writes a report."""
    parser.add_argument(
        "--lang",
        default=None,
        metavar="LANG",
        help="language of the reports and the printed tables: en (default) or ko; "
        f"also ${ENV}. Numbers, units, ids and the JSON are never translated",
    )


# --- stored reasons -------------------------------------------------------------------------

_FIELD_PATTERNS = {
    "span": r"\[[^\]]*\]",
    "value": r"[-+0-9.eEinf∞]+",
    "trial": r"[^ ]+",
    "n": r"\d+",
    "m": r"\d+",
}


def _fields(template: str) -> list[tuple[str, str | None]]:
    return [(lit, name) for lit, name, _spec, _conv in string.Formatter().parse(template)]


@cache
def _regex(template: str) -> re.Pattern[str]:
    parts = []
    for lit, name in _fields(template):
        parts.append(re.escape(lit))
        if name is not None:
            parts.append(f"(?P<{name}>{_FIELD_PATTERNS.get(name, '.+?')})")
    return re.compile("".join(parts), re.S)


def _fill(template: str, values: dict[str, str]) -> str:
    """``template`` with its fields replaced by already formatted text (format specs dropped)."""
    return "".join(
        lit + ("" if name is None else values.get(name, "{" + name + "}"))
        for lit, name in _fields(template)
    )


@cache
def reason_templates() -> tuple[str, ...]:
    """Every registered reason template, longest first (so the most specific matches)."""
    for name in REASON_MODULES:
        importlib.import_module(name)
    return tuple(sorted(_REASONS, key=len, reverse=True))


def _tr_piece(text: str) -> str:
    if not text:
        return text
    translated = _(text)
    if translated != text:
        return translated
    for template in reason_templates():
        m = _regex(template).fullmatch(text)
        if m is not None:
            args = {k: _tr_piece(v) for k, v in m.groupdict().items()}
            return _fill(_(template), args)
    if ", " in text:
        return ", ".join(_tr_piece(p) for p in text.split(", "))
    return text


def tr_reason(text: object) -> str:
    """A reason stored in English (clauses joined by "; ") in the active language; anything not
    in the catalogue (flag names, numbers, a foreign message) is kept as it is."""
    s = "" if text is None else str(text)
    if lang() == "en" or not s:
        return s
    whole = _(s)  # a reason that itself holds "; "
    if whole != s:
        return whole
    return "; ".join(_tr_piece(c) for c in s.split("; "))


# --- terminal alignment ---------------------------------------------------------------------


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal (Hangul and other wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def ljust(text: str, cols: int) -> str:
    """``text`` padded with spaces to ``cols`` terminal columns."""
    return text + " " * max(0, cols - width(text))


# --- catalogue tools: extract, parse .po, compile .mo ---------------------------------------


def extract_msgids(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Every literal marked ``_()``, ``N_()`` or ``R_()`` in the Python files → where it is."""
    found: dict[str, list[str]] = {}
    for path in sorted(paths):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in MARKERS
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.setdefault(node.args[0].value, []).append(f"{path}:{node.lineno}")
    return found


def source_files(root: Path | None = None) -> list[Path]:
    """The package's Python files (the symlinked agent/ and probes/ hold no report strings)."""
    base = root or Path(__file__).resolve().parent
    return [
        p for p in base.rglob("*.py") if p.relative_to(base).parts[0] not in ("agent", "probes")
    ]


def _unquote(s: str) -> str:
    value = ast.literal_eval(s)
    assert isinstance(value, str)
    return value


def parse_po(text: str) -> dict[str, str]:
    """msgid → msgstr of a .po file (no plural forms, no contexts: powerd uses neither).
    The header (msgid "") is kept; fuzzy entries are skipped, as msgfmt does."""
    out: dict[str, str] = {}
    key: str | None = None
    cur: dict[str, str] = {}
    fuzzy = False

    def flush() -> None:
        nonlocal fuzzy
        if "msgid" in cur and "msgstr" in cur and not fuzzy:
            out[cur["msgid"]] = cur["msgstr"]
        cur.clear()
        fuzzy = False

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            key = None
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        elif line.startswith(("msgid ", "msgstr ")):
            word, rest = line.split(" ", 1)
            if word == "msgid" and "msgstr" in cur:
                keep = fuzzy
                flush()
                fuzzy = keep
            key = word
            cur[key] = _unquote(rest)
        elif line.startswith('"') and key is not None:
            cur[key] += _unquote(line)
        else:
            raise ValueError(f"cannot read .po line: {raw!r}")
    flush()
    return out


def compile_mo(catalog: dict[str, str]) -> bytes:
    """A GNU .mo file of ``catalog`` (what msgfmt writes, without the hash table), byte-stable:
    entries sorted by msgid, untranslated ones left out."""
    items = sorted((k, v) for k, v in catalog.items() if v)
    ids = [k.encode() for k, _v in items]
    strs = [v.encode() for _k, v in items]
    n = len(items)
    o_ids = 28
    o_strs = o_ids + 8 * n
    data_at = o_strs + 8 * n
    table_ids, table_strs, blob = [], [], b""
    for s in ids:
        table_ids.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    for s in strs:
        table_strs.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, o_ids, o_strs, 0, data_at)
    tables = b"".join(struct.pack("<2I", *t) for t in (*table_ids, *table_strs))
    return head + tables + blob


def po_files() -> list[Path]:
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def main(argv: list[str] | None = None) -> int:
    """``python -m powerd.i18n compile``: .po → .mo; ``missing``: marked strings with no entry."""
    cmd = (argv if argv is not None else sys.argv[1:]) or ["compile"]
    if cmd[0] == "compile":
        for po in po_files():
            po.with_suffix(".mo").write_bytes(compile_mo(parse_po(po.read_text("utf-8"))))
            print(f"wrote {po.with_suffix('.mo')}")
        return 0
    if cmd[0] == "missing":
        found = extract_msgids(source_files())
        bad = 0
        for po in po_files():
            have = parse_po(po.read_text("utf-8"))
            for msgid, where in sorted(found.items()):
                if not have.get(msgid):
                    bad += 1
                    print(f'#: {" ".join(where)}\nmsgid {_po_quote(msgid)}\nmsgstr ""\n')
        return 1 if bad else 0
    print("usage: python -m powerd.i18n [compile|missing]", file=sys.stderr)
    return 2


def _po_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


if __name__ == "__main__":
    sys.exit(main())
