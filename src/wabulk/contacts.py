"""Reading contact files (CSV and .xlsx) and normalising phone numbers to E.164.

``open_contacts(path, country=...)`` reads and checks the header at once (so a missing phone column or a
bad template is reported before anything is written) and then streams the rows: memory stays flat for
files of millions of rows. Every fatal problem is an :class:`errors.BadInput` naming the file, and the row
and column when there is one; a row with a bad number is not fatal: it comes out as a :class:`Reject`.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from .errors import BadInput

MAX_COLUMNS = 1_000
MAX_FIELD_BYTES = 1024 * 1024  # csv field size cap (characters); bigger fields are reported, not read
MAX_LINE_CHARS = 8 * MAX_FIELD_BYTES  # one physical line; protects against a newline-free binary blob
SNIFF_CHARS = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
MULTI_SEPARATOR = ":::"  # Google Contacts joins several numbers of one field with " ::: "
NOT_MOBILE = "not_mobile"

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
# Characters spreadsheets and phone apps put around numbers that phonenumbers does not expect.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
)


# --- phone numbers ---------------------------------------------------------------------------------


class InvalidPhone(ValueError):
    """A phone number that cannot be used. ``reason`` is a short human explanation."""

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw
        self.reason = reason


@dataclass(frozen=True)
class Phone:
    """A valid phone number: its E.164 form and whether it can be a mobile (WhatsApp) number."""

    e164: str
    mobile: bool


def _clean(raw: str) -> str:
    text = raw
    if not text.isascii():
        # Bidi marks from phone apps go; NFKC turns NBSP into a space and fullwidth digits into ASCII.
        text = unicodedata.normalize("NFKC", text.translate(_INVISIBLE))
    # Excel's text marker ('+44…) and the quotes some exports wrap numbers in.
    text = text.strip().strip("'\u2019\"").strip()
    if text[:4].lower() == "tel:":
        text = text[4:].strip()
    if text.startswith("00"):
        # The international prefix of most of the world; without a country phonenumbers needs a "+".
        text = "+" + text[2:]
    return text


_NON_DIGIT = re.compile(r"\D")


def _digits(text: str) -> str:
    return _NON_DIGIT.sub("", text)


# --- fast path ---------------------------------------------------------------------------------------
# phonenumbers sets the import rate (~70 % of an import's time). Two exact shortcuts, both checked against
# phonenumbers itself by tests/test_phone_fastpath.py:
# - ``_fast_e164``: "+<digits>" input (what exports and previous wabulk runs produce) needs no parsing
#   beyond splitting the country code; anything parse() could treat differently (a leading 0, a national
#   prefix, letters, an extension) falls back to phonenumbers.parse.
# - ``fast_number_type``: phonenumbers.number_type with each region's patterns compiled once (phonenumbers
#   looks every pattern up in re's cache per call, and walks NANPA's 25 regions the same way).

_E164ISH = re.compile(r"\+[1-9][0-9 \-.]{6,24}")
_SPECIAL_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
_SPECIAL_VALUES = tuple(getattr(PhoneNumberType, t.upper()) for t in _SPECIAL_TYPES)
_Desc = tuple[frozenset[int], "re.Pattern[str]"]


def _desc(d: Any) -> _Desc | None:
    if d is None or not d.national_number_pattern:
        return None
    return frozenset(d.possible_length or ()), re.compile(d.national_number_pattern)


def _matches(nsn: str, d: _Desc | None) -> bool:
    # phonenumbers._is_number_matching_desc: possible lengths first, then a full match of the pattern.
    if d is None:
        return False
    lengths, pattern = d
    if lengths and len(nsn) not in lengths:
        return False
    return pattern.fullmatch(nsn) is not None


@dataclass(frozen=True)
class _RegionTypes:
    general: _Desc | None
    specials: tuple[tuple[_Desc | None, int], ...]
    fixed: _Desc | None
    mobile: _Desc | None
    same: bool
    leading: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    idd: re.Pattern[str] | None  # the international call prefix (e.g. 011 in the US, 0011/14xx0011 in AU)
    # All special types' patterns as one alternation: when it does not match, none of them does, so the
    # usual (mobile or fixed) number costs one regex call here instead of one per special type.
    any_special: re.Pattern[str] | None = None

    def type_of(self, nsn: str) -> int:
        """phonenumbers._number_type_helper, step for step."""
        general = self.general  # _matches(nsn, self.general), inlined: every number takes this step
        if general is None or (general[0] and len(nsn) not in general[0]) or not general[1].fullmatch(nsn):
            return PhoneNumberType.UNKNOWN
        if self.any_special is not None and self.any_special.fullmatch(nsn) is not None:
            for d, t in self.specials:
                if _matches(nsn, d):
                    return t
        if _matches(nsn, self.fixed):
            if self.same or _matches(nsn, self.mobile):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same and _matches(nsn, self.mobile):
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN


_REGION_CACHE: dict[tuple[str, int], _RegionTypes | None] = {}


def _region_types(region: str, cc: int) -> _RegionTypes | None:
    key = (region, cc)
    try:
        return _REGION_CACHE[key]
    except KeyError:
        pass
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(cc, region.upper())
    rt = None
    if meta is not None:
        specials = tuple(
            (d, v)
            for d, v in (
                (_desc(getattr(meta, t)), v) for t, v in zip(_SPECIAL_TYPES, _SPECIAL_VALUES, strict=True)
            )
            if d is not None
        )
        rt = _RegionTypes(
            general=_desc(meta.general_desc),
            # Types a region does not have can never match: leave them out of the loop.
            specials=specials,
            fixed=_desc(meta.fixed_line),
            mobile=_desc(meta.mobile),
            same=bool(meta.same_mobile_and_fixed_line_pattern),
            leading=re.compile(meta.leading_digits) if meta.leading_digits is not None else None,
            national_prefix=re.compile(meta.national_prefix_for_parsing)
            if meta.national_prefix_for_parsing
            else None,
            idd=re.compile(meta.international_prefix) if meta.international_prefix else None,
            any_special=re.compile("|".join(f"(?:{d[1].pattern})" for d, _ in specials))
            if specials
            else None,
        )
    _REGION_CACHE[key] = rt
    return rt


def fast_number_type(num: phonenumbers.PhoneNumber) -> int:
    """The same answer as ``phonenumbers.number_type(num)``, with precompiled patterns."""
    return _type_of(num.country_code or 0, phonenumbers.national_significant_number(num))


def _type_of(cc: int, nsn: str) -> int:
    """:func:`fast_number_type` of the number with country code ``cc`` and national significant number
    ``nsn`` (what the fast paths produce, without building a PhoneNumber)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if regions is None:
        return PhoneNumberType.UNKNOWN
    rt: _RegionTypes | None = None
    if len(regions) == 1:
        rt = _region_types(regions[0], cc)
    else:
        # phonenumbers._region_code_for_number_from_list: leading digits when the region has them,
        # else the first region where the number has a type (that type is then the answer).
        for region in regions:
            cand = _region_types(region, cc)
            if cand is None:
                continue
            if cand.leading is not None:
                if cand.leading.match(nsn):
                    rt = cand
                    break
            else:
                t = cand.type_of(nsn)
                if t != PhoneNumberType.UNKNOWN:
                    return t
    return PhoneNumberType.UNKNOWN if rt is None else rt.type_of(nsn)


def _fast_e164(text: str) -> phonenumbers.PhoneNumber | None:
    """``+<country code><number>`` (spaces, dots and hyphens allowed) without phonenumbers.parse, or None
    when the text needs the full parser. Same result as parse() whenever it returns a number."""
    parts = _e164_parts(text)
    return (
        None
        if parts is None
        else phonenumbers.PhoneNumber(country_code=parts[0], national_number=int(parts[1]))
    )


_MAIN_REGION_TYPES: dict[int, _RegionTypes | None] = {}
# Known country codes by their digits ("44" -> 44): no int() per candidate prefix.
_CC_OF_TEXT = {str(cc): cc for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _e164_parts(text: str) -> tuple[int, str] | None:
    """:func:`_fast_e164` as (country code, national significant number): the importer needs no
    PhoneNumber object for a valid number."""
    if not _E164ISH.fullmatch(text):
        return None
    # Only ASCII digits and these separators are left (the pattern checked): cheaper than _digits().
    digits = text[1:].replace(" ", "").replace("-", "").replace(".", "")
    if not 8 <= len(digits) <= 15:
        return None
    # phonenumbers._extract_country_code: the shortest known code wins.
    if (cc := _CC_OF_TEXT.get(digits[:1])) is not None:
        nsn = digits[1:]
    elif (cc := _CC_OF_TEXT.get(digits[:2])) is not None:
        nsn = digits[2:]
    elif (cc := _CC_OF_TEXT.get(digits[:3])) is not None:
        nsn = digits[3:]
    else:
        return None
    if nsn[0] == "0":
        return None  # Italian leading zero or a "(0)" national prefix: parse() knows the rules
    try:
        rt = _MAIN_REGION_TYPES[cc]
    except KeyError:
        rt = _MAIN_REGION_TYPES[cc] = _region_types(phonenumbers.region_code_for_country_code(cc), cc)
    if rt is None or (rt.national_prefix is not None and rt.national_prefix.match(nsn)):
        return None  # parse() may strip a national prefix here
    return cc, nsn


_NATIONALISH = re.compile(r"[1-9(][0-9 \-.()]{3,24}")


def _fast_national(text: str, country: str) -> phonenumbers.PhoneNumber | None:
    """A national-format number ("(201) 555-0123" with country US) without phonenumbers.parse, or None when
    parse() could read it differently: a leading 0 or national prefix, digits that start with the
    region's own country code (parse may strip it) or the international prefix, anything but digits and
    separators."""
    parts = _national_parts(text, country)
    return (
        None
        if parts is None
        else phonenumbers.PhoneNumber(country_code=parts[0], national_number=int(parts[1]))
    )


_NATIONAL_INFO: dict[str, tuple[int, str, _RegionTypes] | None] = {}


def _national_info(country: str) -> tuple[int, str, _RegionTypes] | None:
    """(country code, the code as text, its patterns) of a region, looked up once per region."""
    try:
        return _NATIONAL_INFO[country]
    except KeyError:
        pass
    info = None
    meta = phonenumbers.PhoneMetadata.metadata_for_region(country, None)
    if meta is not None and meta.country_code is not None:
        rt = _region_types(country, meta.country_code)
        if rt is not None:
            info = (meta.country_code, str(meta.country_code), rt)
    _NATIONAL_INFO[country] = info
    return info


def _national_parts(text: str, country: str) -> tuple[int, str] | None:
    """:func:`_fast_national` as (country code, national significant number)."""
    if not _NATIONALISH.fullmatch(text):
        return None
    digits = _digits(text)
    if not 4 <= len(digits) <= 15 or digits[0] == "0":
        return None
    info = _national_info(country)
    if info is None:
        return None
    cc, cc_text, rt = info
    if digits.startswith(cc_text):
        return None
    if rt.national_prefix is not None and rt.national_prefix.match(digits):
        return None
    if rt.idd is not None and rt.idd.match(digits):
        return None  # parse() reads a number dialled with the international prefix as international
    return cc, digits


def _parse_one(text: str, country: str | None) -> tuple[str, bool]:
    """Parse and validate one cleaned number: (E.164, is mobile). Raises InvalidPhone(reason)."""
    num: phonenumbers.PhoneNumber | None = None
    try:
        if text[:1] == "+":
            parts = _e164_parts(text)
        else:
            parts = _national_parts(text, country) if country else None
        if parts is None:
            num = phonenumbers.parse(text, country)
            parts = (num.country_code or 0, phonenumbers.national_significant_number(num))
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if country is None and not text.startswith("+"):
                raise InvalidPhone(
                    text, "no country code: write it as +<country code>… or pass --country"
                ) from None
            raise InvalidPhone(text, "unknown country code") from None
        if (
            exc.error_type == NumberParseException.TOO_SHORT_NSN
            or exc.error_type == NumberParseException.TOO_SHORT_AFTER_IDD
        ):
            raise InvalidPhone(text, "too short") from None
        if exc.error_type == NumberParseException.TOO_LONG:
            raise InvalidPhone(text, "too long") from None
        raise InvalidPhone(text, "not a phone number") from None
    # number_type() is UNKNOWN exactly when is_valid_number() is False (both match the national number
    # against the region's patterns), so one call gives both answers at half the cost: phonenumbers is
    # most of an import's time.
    cc, nsn = parts
    ntype = _type_of(cc, nsn)
    if ntype != PhoneNumberType.UNKNOWN:
        # format_number(E164) is exactly this for a parsed number (no extension in E.164).
        return f"+{cc}{nsn}", ntype in _MOBILE_TYPES
    if num is None:
        num = phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))
    possible = phonenumbers.is_possible_number_with_reason(num)
    reasons = {
        phonenumbers.ValidationResult.TOO_SHORT: "too short",
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
        phonenumbers.ValidationResult.TOO_LONG: "too long",
        phonenumbers.ValidationResult.INVALID_LENGTH: "impossible length",
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    }
    region = phonenumbers.region_code_for_country_code(num.country_code or 0)
    raise InvalidPhone(text, reasons.get(possible, f"not a valid number in {region} (+{num.country_code})"))


def parse_phone(raw: str, country: str | None) -> Phone:
    """Parse ``raw`` (any usual formatting) with default region ``country`` (None: only international
    numbers, ``+…``/``00…``, parse). Raises :class:`InvalidPhone` with the reason when it is unusable."""
    return Phone(*_phone(raw, country))


_ANY_DIGIT = re.compile(r"\d")


def _phone(raw: str, country: str | None) -> tuple[str, bool]:
    """:func:`parse_phone` as (E.164, is mobile), without the Phone object (the importer's per-row path)."""
    text = _clean(str(raw))
    if _ANY_DIGIT.search(text) is None:  # i.e. _digits(text) is empty
        raise InvalidPhone(str(raw), "empty" if not text else "not a phone number")
    try:
        return _parse_one(text, country)
    except InvalidPhone as first:
        # "447700…" without the "+": spreadsheets drop it. Only tried when the national reading failed.
        digits = _digits(text)
        if text.startswith("+") or len(digits) < 8 or len(digits) > 15:
            raise InvalidPhone(str(raw), first.reason) from None
        try:
            return _parse_one("+" + digits, None)
        except InvalidPhone:
            raise InvalidPhone(str(raw), first.reason) from None


def normalize_phone(raw: str, country: str | None) -> str:
    """``raw`` as E.164 (``+14155550123``); raises :class:`InvalidPhone` (a ValueError) with a reason."""
    return parse_phone(raw, country).e164


def normalize_phones(numbers: Sequence[str], country: str | None) -> list[str]:
    """Each of ``numbers`` as E.164, local ones read in ``country`` (default: :func:`default_country`);
    raises :class:`BadInput` ``'<raw>': <reason>`` at the first invalid one (``optout add/remove``, the
    API's opt-out endpoints)."""
    cc = country or default_country()
    out = []
    for raw in numbers:
        try:
            out.append(normalize_phone(raw, cc))
        except ValueError as exc:
            raise BadInput(f"{raw!r}: {exc}") from None
    return out


def parse_cell(raw: str, country: str | None) -> Phone:
    """Like :func:`parse_phone`, but a cell may hold several numbers joined by ``:::`` (Google
    Contacts): the first mobile one wins, else the first valid one, else the first one's reason."""
    return Phone(*_cell(raw, country))


def _cell(raw: str, country: str | None) -> tuple[str, bool]:
    """:func:`parse_cell` as (E.164, is mobile)."""
    if MULTI_SEPARATOR not in raw:
        return _phone(raw, country)
    first_error: InvalidPhone | None = None
    first_valid: tuple[str, bool] | None = None
    for part in raw.split(MULTI_SEPARATOR):
        if not part.strip():
            continue
        try:
            phone = _phone(part, country)
        except InvalidPhone as exc:
            first_error = first_error or exc
            continue
        if phone[1]:
            return phone
        first_valid = first_valid or phone
    if first_valid is not None:
        return first_valid
    raise first_error or InvalidPhone(raw, "empty")


def check_country(country: str | None) -> str | None:
    """Upper-case a region code (``gb`` -> ``GB``) and check phonenumbers knows it; BadInput if not."""
    if country is None or not country.strip():
        return None
    cc = country.strip().upper()
    if cc not in phonenumbers.SUPPORTED_REGIONS:
        raise BadInput(f"unknown country {country!r}: use a two-letter region code such as US, GB, IN, BR")
    return cc


def default_country(environ: dict[str, str] | None = None) -> str | None:
    """The region of the user's locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``; ``en_US.UTF-8`` -> ``US``),
    or None when there is none (``C``, ``POSIX``, unset) or phonenumbers does not know it."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if not value:
            continue
        match = re.match(r"^[A-Za-z]{2,3}[_-]([A-Za-z]{2})\b", value)
        if match and match.group(1).upper() in phonenumbers.SUPPORTED_REGIONS:
            return match.group(1).upper()
        return None  # the first variable set decides, as the C library does
    return None


# --- column names ----------------------------------------------------------------------------------


def _words(header: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", header)  # camelCase -> camel Case
    return [w for w in re.split(r"[^0-9a-z]+", spaced.lower()) if w]


def column_key(header: str) -> str:
    """A column name as a template identifier: ``"First Name"`` -> ``first_name``, ``"E-mail"`` ->
    ``e_mail``. Case-insensitive; non-ASCII letters are kept (``Prénom`` -> ``prénom``)."""
    return "_".join(w for w in re.split(r"\W+", header.strip().lower()) if w)


_MOBILE_WORDS = {
    "mobile",
    "mobil",
    "iphone",
    "handynummer",
    "mobilnummer",
    "cell",
    "cellphone",
    "cellular",
    "whatsapp",
    "handy",
    "mob",
    "celular",
    "movil",
    "mobilephone",
    "mobilenumber",
    "whatsappnumber",
}
_PHONE_WORDS = {
    "phone",
    "telephone",
    "tel",
    "telefon",
    "telefono",
    "telefone",
    "msisdn",
    "phonenumber",
    "phones",
    "telefonnummer",
}
_NUMBER_ONLY = {"number", "numbers", "num", "nr", "no", "contact", "contactnumber"}
_NOT_A_NUMBER = {
    "type",
    "label",
    "kind",
    "country",
    "code",
    "ext",
    "extension",
    "verified",
    "status",
    "id",
    "count",
    "prefix",
    "area",
}


def _phone_score(header: str) -> int:
    """How much a header reads like a phone column (0 = not at all). Whole words only: "Phonetic First
    Name" is not a phone column, and "Phone 1 - Label" holds the label, not the number."""
    words = _words(header)
    compact = "".join(words)
    # "Phone 1 - Type", "Country Code": the last word says what the column holds. (Not any word:
    # a vCard-to-CSV tool's "TEL;type=CELL" holds the numbers.)
    if not words or words[-1] in _NOT_A_NUMBER or compact in _NOT_A_NUMBER:
        return 0
    if _MOBILE_WORDS.intersection(words) or compact in _MOBILE_WORDS:
        return 3
    if _PHONE_WORDS.intersection(words) or compact in _PHONE_WORDS:
        return 2
    if compact in _NUMBER_ONLY:
        return 1
    return 0


SAMPLE_ROWS = 200  # rows read ahead to see which candidate column really holds phone numbers


def _parses(value: Any, country: str | None) -> bool:
    text = value if type(value) is str else _cell_text(value)
    if not text.strip():
        return False
    try:
        _cell(text, country)
    except InvalidPhone:
        return False
    return True


def choose_phone_column(
    headers: Sequence[str], sample: Sequence[Sequence[Any]], country: str | None
) -> tuple[int | None, str | None]:
    """The phone column: among the columns whose header reads like one, the one whose sampled values
    parse as phone numbers most often (then the better header, then the leftmost). When no header
    reads like a phone column, a column whose values are mostly phone numbers is taken. Returns the
    index (None: no candidate) and a notice explaining a choice the header alone would not have made."""
    by_header = [(i, _phone_score(h)) for i, h in enumerate(headers)]
    named = [(i, s) for i, s in by_header if s > 0]
    candidates = named or [(i, 0) for i in range(len(headers))]

    def hits(i: int) -> int:
        return sum(1 for r in sample if i < len(r) and _parses(r[i], country))

    scored = [(hits(i), s, -i) for i, s in candidates]
    best_hits, best_s, neg_i = max(scored)
    best = -neg_i
    if not named:
        rows = sum(1 for r in sample if any(str(c).strip() for c in r if c is not None))
        if not rows or best_hits * 2 < rows:
            return None, None  # no header says "phone" and no column is mostly numbers
        return best, (
            f"no column is named like a phone column; using {headers[best]!r}, whose values are numbers"
        )
    by_name = max(named, key=lambda t: (t[1], -t[0]))[0]
    if best != by_name:
        return best, (
            f"phone column: {headers[best]!r} (its values are phone numbers; {headers[by_name]!r}'s are not)"
        )
    return best, None


_NAME_FULL = {
    "name",
    "fullname",
    "displayname",
    "formattedname",
    "contactname",
    "customername",
    "clientname",
    "nombre",
    "nom",
    "nome",
    "recipient",
    "recipientname",
    "person",
}
_NAME_FIRST = {"firstname", "givenname", "first", "forename", "vorname", "prenom", "fname"}
_NAME_LAST = {"lastname", "familyname", "surname", "last", "nachname", "lname"}


def detect_columns(headers: Sequence[str]) -> tuple[int | None, tuple[int, ...]]:
    """Guess the phone column from the header alone (index or None) and the name column(s) (indexes to
    join with a space). :func:`open_contacts` also looks at the values (:func:`choose_phone_column`)."""
    best, best_score = None, 0
    for i, h in enumerate(headers):
        score = _phone_score(h)
        if score > best_score:
            best, best_score = i, score
    compact = ["".join(_words(h)) for h in headers]
    for i, c in enumerate(compact):
        if c in _NAME_FULL:
            return best, (i,)
    first = next((i for i, c in enumerate(compact) if c in _NAME_FIRST), None)
    last = next((i for i, c in enumerate(compact) if c in _NAME_LAST), None)
    names = tuple(i for i in (first, last) if i is not None)
    return best, names


def _find_named(headers: Sequence[str], wanted: str, what: str, file: str) -> int:
    for i, h in enumerate(headers):
        if h == wanted:
            return i
    key = column_key(wanted)
    for i, h in enumerate(headers):
        if column_key(h) == key:
            return i
    raise BadInput(f"no {what} column {wanted!r}; the columns are: {_list(headers)}", file=file)


def _list(headers: Sequence[str]) -> str:
    shown = ", ".join(repr(h) for h in headers[:40])
    return shown + (f", … ({len(headers)} in all)" if len(headers) > 40 else "")


# --- rows ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """One usable row: its E.164 phone, display name and every column by template key."""

    row: int  # 1-based record number, header = 1 (the spreadsheet row unless fields span lines)
    phone: str
    name: str | None
    variables: dict[str, str]
    flags: tuple[str, ...] = ()


# A usable row as ContactFile.records() yields it: (row, E.164 phone, name, variables, is mobile).
ContactRecord = tuple[int, str, str | None, dict[str, str], bool]


@dataclass(frozen=True)
class Reject:
    """A row that was left out, and why."""

    row: int
    column: str | None
    value: str
    reason: str

    @property
    def phone(self) -> None:
        """Always None: lets callers treat ``Contact | Reject`` alike (``if item.phone: …``)."""
        return None


@dataclass
class ContactFile:
    """An open contact file: header checked, rows not read yet. Iterate for Contact/Reject items.

    Use as a context manager (or call :meth:`close`); iterate at most once.
    """

    path: Path
    headers: list[str]
    keys: list[str]  # template key of each column (deduplicated: a second "Name" becomes name_2)
    phone_index: int
    name_indexes: tuple[int, ...]
    country: str | None
    notices: list[str] = field(default_factory=list)
    _rows: Iterator[list[Any]] | None = None
    _closer: Any = None
    _first_row: int = 2

    @property
    def phone_column(self) -> str:
        return self.headers[self.phone_index]

    @property
    def name_column(self) -> str | None:
        return " + ".join(self.headers[i] for i in self.name_indexes) or None

    @property
    def variable_names(self) -> list[str]:
        """Every key a template may use: the columns plus ``name`` and ``phone``."""
        extra = [k for k in ("name", "phone") if k not in self.keys]
        return [k for k in self.keys if k] + extra

    def close(self) -> None:
        if self._closer is not None:
            try:
                self._closer()
            finally:
                self._closer = None

    def __enter__(self) -> ContactFile:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Contact | Reject]:
        for item in self.records():
            if isinstance(item, Reject):
                yield item
            else:
                row, phone, name, variables, mobile = item
                yield Contact(row, phone, name, variables, () if mobile else (NOT_MOBILE,))

    def records(self) -> Iterator[ContactRecord | Reject]:
        """What iteration yields, with each usable row as a plain ``(row, phone, name, variables,
        mobile)`` tuple instead of a :class:`Contact` (the importer's per-row path: no object per row)."""
        if self._rows is None:
            raise RuntimeError("a ContactFile can be iterated only once")
        rows, self._rows = self._rows, None
        file = str(self.path)
        ncols = len(self.headers)
        row_no = self._first_row - 1
        # Per-file constants out of the loop: this body runs once per row of a 1M-row import.
        keys = self.keys
        keyed = [i for i, k in enumerate(keys) if k]  # columns without a header have no template key
        all_keyed = len(keyed) == ncols
        phone_index = self.phone_index
        name_indexes = self.name_indexes
        one_name = name_indexes[0] if len(name_indexes) == 1 else None
        country = self.country
        phone_column = self.phone_column
        for raw in rows:
            row_no += 1
            if len(raw) > MAX_COLUMNS:
                raise BadInput(f"{len(raw)} columns (at most {MAX_COLUMNS})", file=file, row=row_no)
            # CSV cells are already str: skip the conversion call for them (a per-cell cost on 1M rows).
            cells = [v if type(v) is str else _cell_text(v) for v in raw[:ncols]]
            stripped = [c.strip() for c in cells]
            if not "".join(stripped):
                continue  # blank line: nothing to report
            if len(cells) < ncols:
                cells.extend([""] * (ncols - len(cells)))
                stripped.extend([""] * (ncols - len(stripped)))
            value = cells[phone_index]
            try:
                e164, mobile = _cell(value, country)
            except InvalidPhone as exc:
                yield Reject(row_no, phone_column, value, exc.reason)
                continue
            if one_name is not None:
                name = stripped[one_name] or None
            else:
                name = " ".join([c for c in (stripped[i] for i in name_indexes) if c]) or None
            if all_keyed:
                variables = dict(zip(keys, stripped, strict=True))
            else:
                variables = {keys[i]: stripped[i] for i in keyed}
            # {name} is the display name and {phone} the normalised number, whatever the columns are called.
            variables["name"] = name or ""
            variables["phone"] = e164
            yield row_no, e164, name, variables, mobile


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number typed into Excel: 447700900123.0 -> "447700900123"
    return str(value)


def _keys(headers: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    keys = []
    for h in headers:
        key = column_key(h)
        if key and key in seen:
            n = 2
            while f"{key}_{n}" in seen:
                n += 1
            key = f"{key}_{n}"
        seen.add(key)
        keys.append(key)
    return keys


def open_contacts(
    path: Path | str, *, country: str | None, phone_column: str | None = None, name_column: str | None = None
) -> ContactFile:
    """Open a CSV or .xlsx contact file, read its header and find the phone and name columns.

    Raises BadInput (naming the file) when the file cannot be read, has no header or no phone column,
    or a named column does not exist (the message lists the columns there are)."""
    p = Path(path)
    file = str(p)
    country = check_country(country)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise BadInput("file not found", file=file) from None
    except IsADirectoryError:
        raise BadInput("is a directory, not a contact file", file=file) from None
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror or exc}", file=file) from None
    suffix = p.suffix.lower()
    if suffix == ".xls" or magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput("old Excel .xls files are not supported: save as .xlsx or CSV", file=file)
    if suffix in (".xlsx", ".xlsm") or magic == b"PK\x03\x04":
        headers, rows, closer, notices = _open_xlsx(p)
    else:
        headers, rows, closer, notices = _open_csv(p)
    try:
        headers = [h.strip() for h in headers]
        while headers and not headers[-1]:
            headers.pop()  # trailing empty header cells (Excel's stray formatted columns)
        if not headers or not any(headers):
            raise BadInput("no header row: the first row must name the columns (e.g. name,phone)", file=file)
        if len(headers) > MAX_COLUMNS:
            raise BadInput(f"{len(headers)} columns (at most {MAX_COLUMNS})", file=file, row=1)
        _, name_idxs = detect_columns(headers)
        if phone_column is not None:
            phone_idx: int | None = _find_named(headers, phone_column, "phone", file)
        else:
            # Read a few rows ahead: the values decide between candidate columns.
            sample = list(itertools.islice(rows, SAMPLE_ROWS))
            rows = itertools.chain(sample, rows)
            phone_idx, why = choose_phone_column(headers, sample, country)
            if why:
                notices.append(why)
        if phone_idx is None:
            raise BadInput(
                f"no phone column found; name it with --phone-column. The columns are: {_list(headers)}",
                file=file,
            )
        if name_column is not None:
            name_idxs = (_find_named(headers, name_column, "name", file),)
        return ContactFile(p, headers, _keys(headers), phone_idx, name_idxs, country, notices, rows, closer)
    except BaseException:
        closer()
        raise


def read_contacts(
    path: Path | str,
    *,
    country: str | None,
    phone_column: str | None = None,
    name_column: str | None = None,
    require_name: bool = False,
) -> Iterator[Contact | Reject]:
    """Stream a contact file's rows (:class:`Contact` for usable ones, :class:`Reject` with the reason
    otherwise; both have ``.phone``, None for a Reject). The file is closed when the iteration ends.
    ``require_name=True`` makes a file without a recognisable name column a BadInput."""
    with open_contacts(path, country=country, phone_column=phone_column, name_column=name_column) as cf:
        if require_name and not cf.name_indexes:
            raise BadInput(
                f"no name column found; name it with --name-column. The columns are: {_list(cf.headers)}",
                file=str(cf.path),
            )
        yield from cf


def read_header(path: Path | str) -> list[str]:
    """The column names of a contact file's header row, as :func:`open_contacts` reads them (for a
    column-mapping choice: it works also when no phone column can be found). BadInput when unreadable."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror or exc}", file=str(p)) from None
    if p.suffix.lower() in (".xlsx", ".xlsm") or magic == b"PK\x03\x04":
        headers, _rows, closer, _notices = _open_xlsx(p)
    else:
        headers, _rows, closer, _notices = _open_csv(p)
    closer()
    headers = [h.strip() for h in headers]
    while headers and not headers[-1]:
        headers.pop()
    return headers[:MAX_COLUMNS]


# --- CSV -------------------------------------------------------------------------------------------


def _detect_encoding(p: Path) -> tuple[str, list[str]]:
    """Pick the encoding by BOM, else UTF-8 if the whole file decodes, else cp1252 (with a notice).
    Also rejects binary files (NUL characters). One fast pass over the file, in chunks."""
    file = str(p)
    with open(p, "rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            candidates = ["utf-8-sig"]
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            candidates = ["utf-16"]
        else:
            candidates = ["utf-8", "cp1252"]
        for enc in candidates:
            fh.seek(0)
            decoder = codecs.getincrementaldecoder(enc)("strict")
            line = 1
            try:
                while chunk := fh.read(1 << 20):
                    text = decoder.decode(chunk)
                    if "\x00" in text:
                        line += text.count("\n", 0, text.index("\x00"))
                        raise BadInput(
                            "binary data (NUL characters): not a CSV or .xlsx file", file=file, row=line
                        )
                    line += text.count("\n")
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                if enc == "utf-8":
                    continue
                raise BadInput(
                    f"cannot decode the file as {enc} near line {line}: save it as UTF-8 CSV", file=file
                ) from None
            notices = []
            if enc == "cp1252":
                notices.append(
                    f"{p.name} is not UTF-8; read it as Windows-1252 (cp1252). "
                    "Check accented names in the preview, or save the file as UTF-8."
                )
            return enc, notices
    raise AssertionError("unreachable")


def _sniff(sample: str) -> str:
    """The delimiter among , ; TAB | that splits the sample into the most consistent rows."""
    lines = sample.splitlines(keepends=True)
    if len(sample) >= SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line is probably cut off
    best, best_score = ",", (0, 0, 0)
    for d in DELIMITERS:
        try:
            rows = list(csv.reader(lines[:50], delimiter=d))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width)
        score = (consistent, width, -DELIMITERS.index(d))
        if score > best_score:
            best, best_score = d, score
    return best


def _lines(fh: Any, file: str) -> Iterator[str]:
    """Physical lines, each capped so a newline-free blob cannot fill memory."""
    n = 0
    while line := fh.readline(MAX_LINE_CHARS):
        n += 1
        if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):
            raise BadInput(f"line {n} is longer than {MAX_LINE_CHARS:,} characters", file=file)
        yield line


def _open_csv(p: Path) -> tuple[list[str], Iterator[list[Any]], Any, list[str]]:
    file = str(p)
    encoding, notices = _detect_encoding(p)
    try:
        fh = open(p, encoding=encoding, newline="")
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        sample = fh.read(SNIFF_CHARS)
        fh.seek(0)
        delimiter = _sniff(sample)
        if csv.field_size_limit() < MAX_FIELD_BYTES:
            # Process-wide setting; raising the 128 KiB default is harmless for other readers.
            csv.field_size_limit(MAX_FIELD_BYTES)
        reader = csv.reader(_lines(fh, file), delimiter=delimiter)
        rows = _csv_rows(reader, file)
        header = next(rows, None)
        if header is None:
            raise BadInput("the file is empty: a header row is required", file=file)
        return [str(h) for h in header], rows, fh.close, notices
    except BaseException:
        fh.close()
        raise


def _csv_rows(reader: Any, file: str) -> Iterator[list[Any]]:
    record = 0
    while True:
        record += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            msg = str(exc)
            if "field larger than field limit" in msg:
                msg = f"a field is larger than {MAX_FIELD_BYTES:,} characters (unbalanced quote?)"
            raise BadInput(f"malformed CSV: {msg}", file=file, row=record) from None
        yield row


# --- xlsx ------------------------------------------------------------------------------------------


def _open_xlsx(p: Path) -> tuple[list[str], Iterator[list[Any]], Any, list[str]]:
    file = str(p)
    try:
        import openpyxl

        wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl/zipfile raise many types for a damaged file
        raise BadInput(f"cannot read as an .xlsx workbook ({type(exc).__name__}: {exc})", file=file) from None
    try:
        ws = wb.worksheets[0] if wb.worksheets else None
        if ws is None:
            raise BadInput("the workbook has no sheet", file=file)
        notices = []
        if len(wb.worksheets) > 1:
            notices.append(f"{p.name} has {len(wb.worksheets)} sheets; only the first, {ws.title!r}, is read")
        try:
            it = ws.iter_rows(values_only=True)
            first = next(it, None)
        except Exception as exc:  # damaged sheet XML
            raise BadInput(f"cannot read the first sheet ({type(exc).__name__}: {exc})", file=file) from None
        if first is None:
            raise BadInput("the sheet is empty: a header row is required", file=file)
        return [_cell_text(v) for v in first], _xlsx_rows(it, file), wb.close, notices
    except BaseException:
        wb.close()
        raise


def _xlsx_rows(it: Iterator[tuple[Any, ...]], file: str) -> Iterator[list[Any]]:
    row = 1
    while True:
        row += 1
        try:
            values = next(it)
        except StopIteration:
            return
        except Exception as exc:  # damaged sheet XML part-way through
            raise BadInput(
                f"cannot read the sheet ({type(exc).__name__}: {exc})", file=file, row=row
            ) from None
        yield list(values)
