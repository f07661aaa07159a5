"""The words of the reports and the terminal in each language (`--lang en|ko`, OUTPUT.md).

The texts sit in analyzer/report/messages/<lang>.toml: tables of keys, read as flat keys joined
with dots ("report.evidence"), each a text with `{name}` placeholders; a text that counts
something may be a pair `[one, other]`, picked by the value `n` (Korean needs one form). The
signature library's own words (titles, summaries, steps) are in the signature files. Ids,
evidence lines, names and paths never go through here.

Times are shown in UTC in each language's order, the zone always named.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from markupsafe import Markup, escape

LANGS = ("en", "ko")
DEFAULT_LANG = "en"
FOLDER = Path(__file__).parent / "report" / "messages"


def check_lang(value: object) -> str | None:
    """`value` if it names a language the analyzer speaks, else None."""
    return value if isinstance(value, str) and value in LANGS else None


def _flatten(table: dict, prefix: str = "") -> dict[str, str | tuple[str, str]]:
    out: dict[str, str | tuple[str, str]] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            out[name] = (value[0], value[1])
        elif isinstance(value, str):
            out[name] = value
        else:
            raise ValueError(f"{name}: a message is a text or a pair [one, other], not {value!r}")
    return out


@cache
def catalogue(lang: str) -> dict[str, str | tuple[str, str]]:
    """Every message of a language by its flat key (read once per process)."""
    path = FOLDER / f"{lang}.toml"
    return _flatten(tomllib.loads(path.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- times in each language

def format_time(moment: datetime, lang: str = DEFAULT_LANG) -> str:
    """A UTC time as the language writes it: 2024-05-14 10:21:33Z, 2024. 5. 14. 10:21:33 UTC."""
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    if lang == "ko":
        return f"{moment.year}. {moment.month}. {moment.day}. {moment:%H:%M:%S} UTC"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time of the document (Z, an offset, or naive = UTC); None when `value` is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def format_iso(value: object, lang: str = DEFAULT_LANG) -> str | None:
    """An ISO 8601 time in the language's form; None when `value` is not one."""
    moment = parse_iso(value)
    return None if moment is None else format_time(moment, lang)


# ---------------------------------------------------------------- messages

class Messages:
    """One language's messages. `text` gives plain text (terminal, scripts); `html` the same
    escaped for a page, with the values escaped unless they are markup already."""

    def __init__(self, lang: str = DEFAULT_LANG):
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self.texts = catalogue(self.lang)

    def _template(self, key: str, n: object) -> str:
        found = self.texts[key]  # a missing key is a bug: the catalogue test names it
        if isinstance(found, tuple):
            return found[0] if n == 1 else found[1]
        return found

    def text(self, key: str, /, **values: object) -> str:
        return self._template(key, values.get("n")).format_map(values)

    def html(self, key: str, /, **values: object) -> Markup:
        return Markup(escape(self._template(key, values.get("n")))).format(**values)

    def has(self, key: str) -> bool:
        return key in self.texts

    def label(self, group: str, value: object) -> str:
        """The word for an enumerated value (`health.critical`), or the value itself when the
        catalogue has none (a value the document should not hold)."""
        key = f"{group}.{value}"
        return self.text(key) if key in self.texts else str(value)

    def time(self, value: object) -> str | None:
        return format_iso(value, self.lang)

    def script(self, prefix: str) -> dict[str, str | list[str]]:
        """The messages under `prefix.` (prefix removed), for a page's script."""
        cut = len(prefix) + 1
        return {key[cut:]: list(value) if isinstance(value, tuple) else value
                for key, value in self.texts.items() if key.startswith(prefix + ".")}


@cache
def messages(lang: str = DEFAULT_LANG) -> Messages:
    return Messages(lang)
