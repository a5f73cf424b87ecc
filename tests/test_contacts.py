"""Contact files: encodings, delimiters, column detection, phone normalisation, fatal errors."""

from __future__ import annotations

import csv
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wabulk.contacts import (
    MAX_COLUMNS,
    MAX_FIELD_BYTES,
    NOT_MOBILE,
    Contact,
    InvalidPhone,
    Reject,
    column_key,
    default_country,
    normalize_phone,
    open_contacts,
    parse_phone,
    read_contacts,
)
from wabulk.errors import BadInput

DATA = Path(__file__).parent / "data"
AU1, AU2 = "+61491570156", "+61491570157"  # ACMA's fictional mobile range: valid, never assigned


def rows(path: Path, **kw: object) -> list[Contact | Reject]:
    kw.setdefault("country", None)
    return list(read_contacts(path, **kw))  # type: ignore[arg-type]


def write(tmp_path: Path, text: str, name: str = "c.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


# --- encodings and delimiters ----------------------------------------------------------------------


def test_utf8_bom_and_pipe_delimiter() -> None:
    [c] = rows(DATA / "utf8_bom_pipe.csv")
    assert isinstance(c, Contact)
    assert (c.name, c.phone) == ("Ann", AU1)


def test_utf16_with_bom_and_tabs() -> None:
    with open_contacts(DATA / "utf16_tab.csv", country=None) as cf:
        assert cf.headers == ["name", "mobile", "city"]
        [c] = list(cf)
    assert isinstance(c, Contact) and c.phone == AU1 and c.variables["city"] == "Sydney"


def test_cp1252_falls_back_with_a_notice_and_keeps_accents() -> None:
    with open_contacts(DATA / "outlook_cp1252_semicolon.csv", country="AU") as cf:
        assert any("cp1252" in n for n in cf.notices)
        assert cf.phone_column == "Mobile Phone"  # mobile preferred over "Business Phone"
        got = list(cf)
    assert [(c.name, c.phone, c.variables["city"]) for c in got if isinstance(c, Contact)] == [
        ("Zoë Müller", AU1, "Köln"),
        ("José García", AU2, "Málaga"),
    ]


def test_utf8_file_has_no_notice(tmp_path: Path) -> None:
    p = write(tmp_path, "name,phone\nZoë,+61491570156\n")
    with open_contacts(p, country=None) as cf:
        assert cf.notices == []
        [c] = list(cf)
    assert isinstance(c, Contact) and c.name == "Zoë"


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delim: str) -> None:
    # Commas inside names must not fool the sniffer when the real delimiter is another one.
    text = delim.join(["name", "phone", "note"]) + "\n"
    text += delim.join(['"Smith, Ann"', "+61 491 570 156", "a, b, c"]) + "\n"
    text += delim.join(["Bob", "+61 491 570 157", "x"]) + "\n"
    got = rows(write(tmp_path, text))
    assert [(c.name, c.phone) for c in got] == [("Smith, Ann", AU1), ("Bob", AU2)]


def test_quoted_newlines_and_row_numbers(tmp_path: Path) -> None:
    p = write(tmp_path, 'name,phone,note\nAnn,+61491570156,"line one\nline two"\nBob,12,x\n')
    got = rows(p)
    assert isinstance(got[0], Contact) and got[0].variables["note"] == "line one\nline two"
    assert isinstance(got[1], Reject) and got[1].row == 3 and got[1].column == "phone"


def test_blank_lines_are_skipped_but_counted_in_row_numbers(tmp_path: Path) -> None:
    got = rows(write(tmp_path, "name,phone\n\n,\nBob,bad\n"))
    assert got == [Reject(4, "phone", "bad", "not a phone number")]


def test_xlsx_streams_rows_with_numeric_cells(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Full Name", "WhatsApp", "Amount"])
    ws.append(["Ann", "+61 491 570 156", 12.5])
    ws.append(["Bob", 61491570157, 3])  # typed as a number: Excel loses the "+"
    ws.append([None, None, None])
    ws.append(["Eve", "nope", 1])
    p = tmp_path / "c.xlsx"
    wb.save(p)
    got = rows(p)
    assert [(type(r).__name__, r.row) for r in got] == [("Contact", 2), ("Contact", 3), ("Reject", 5)]
    assert got[0].phone == AU1 and got[1].phone == AU2
    assert isinstance(got[0], Contact) and got[0].variables["amount"] == "12.5"


# --- column detection ------------------------------------------------------------------------------


def test_google_contacts_export() -> None:
    with open_contacts(DATA / "google_contacts.csv", country=None) as cf:
        assert cf.phone_column == "Phone 1 - Value"
        assert cf.name_column == "Name"
        got = list(cf)
    ana, ben, land = got
    assert isinstance(ana, Contact) and ana.phone == AU1  # " ::: " cell: the mobile one, not the first
    assert ana.variables["notes"] == "Met at the fair\ncall after 6pm"
    assert isinstance(ben, Contact) and ben.phone == AU2
    assert isinstance(land, Contact) and land.flags == (NOT_MOBILE,)  # valid landline: kept, flagged


# Today's exports, as the tools write them (headers, encodings, BOMs, delimiters, multi-value cells).


def _found(path: Path, country: str | None = "AU") -> tuple[str, str | None, list[tuple[int, str | None]]]:
    with open_contacts(path, country=country) as cf:
        got = [(r.row, r.phone) for r in cf]
        return cf.phone_column, cf.name_column, got


def test_google_contacts_2026_export_is_not_fooled_by_phonetic_names() -> None:
    # The header starts "First Name,Middle Name,Last Name,Phonetic First Name": "phonetic" is not "phone".
    column, name, got = _found(DATA / "google_contacts_2026.csv")
    assert (column, name) == ("Phone 1 - Value", "First Name + Last Name")
    assert got == [
        (2, AU1),  # "+61 2 … ::: +61 491 570 156" (labels "Work ::: Mobile"): the mobile one
        (3, AU2),
        (4, "+61491570158"),  # a national number, with --country AU
        (5, "+12025550101"),  # two US numbers in one cell: the first
        (6, "+61491570159"),  # a business without a name: kept
    ]


def test_outlook_desktop_export_cp1252_all_quoted_crlf() -> None:
    column, name, got = _found(DATA / "outlook_2026.csv")
    assert (column, name) == ("Mobile Phone", "First Name + Last Name")
    assert got == [(2, AU1), (3, AU2), (4, None), (5, "+61491570159")]  # row 4 has a business phone only


def test_iphone_vcard_to_csv_with_bom_and_semicolons() -> None:
    column, name, got = _found(DATA / "iphone_vcard.csv")
    assert (column, name) == ("TEL;type=CELL", "Formatted Name")
    assert got == [(2, AU1), (3, None), (4, "+61491570158")]


def test_whatsapp_business_export_with_wa_ids() -> None:
    # wa_id numbers: the country code without the "+"; no --country needed.
    column, name, got = _found(DATA / "whatsapp_business.csv", country=None)
    assert (column, name) == ("Phone Number", "Name")
    assert got == [(2, AU1), (3, AU2), (4, "+61491570158"), (5, "+12025550101")]


def test_excel_export_with_numbers_typed_as_numbers(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    # A shop's sheet: a "Phone Type" label column left of the numbers, numbers typed as numbers (Excel
    # drops the "+"), and a formatted but empty column at the end.
    ws.append(["Customer", "Phone Type", "Phone", "Order No", None])
    ws.append(["Ann", "mobile", 61491570156, 1001, None])
    ws.append(["Bob", "mobile", "+61 491 570 157", 1002, None])
    p = tmp_path / "Customers.xlsx"
    wb.save(p)
    assert _found(p, country=None) == ("Phone", None, [(2, AU1), (3, AU2)])


def test_the_values_decide_between_candidate_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "Name,Mobile,Telephone\nAnn,ask reception,+61491570156\nBob,,+61491570157\n")
    with open_contacts(p, country=None) as cf:
        assert cf.phone_column == "Telephone"
        assert "'Telephone' (its values are phone numbers; 'Mobile''s are not)" in cf.notices[0]


def test_a_column_of_numbers_is_found_without_a_phone_header(tmp_path: Path) -> None:
    p = write(tmp_path, "Customer,Contact details\nAnn,+61491570156\nBob,+61 491 570 157\n")
    with open_contacts(p, country=None) as cf:
        assert cf.phone_column == "Contact details"
        assert "no column is named like a phone column" in cf.notices[0]


def test_first_and_last_name_are_combined(tmp_path: Path) -> None:
    with open_contacts(
        write(tmp_path, "First Name,Last Name,Cell\nAnn,Lee,+61491570156\n"), country=None
    ) as cf:
        assert cf.name_column == "First Name + Last Name"
        [c] = list(cf)
    assert isinstance(c, Contact) and c.name == "Ann Lee" and c.variables["first_name"] == "Ann"


@pytest.mark.parametrize(
    "header,expected",
    [
        ("id,Order Number,Phone,Mobile Phone", "Mobile Phone"),
        ("Tel,Status", "Tel"),
        ("Phone Type,Number", "Number"),
        ("contact_name,whatsapp_no", "whatsapp_no"),
        ("Name,PHONE NUMBER", "PHONE NUMBER"),
        ("Phonetic First Name,Phone 1 - Label,Phone 1 - Value", "Phone 1 - Value"),
        ("Telephoto,Tel", "Tel"),
    ],
)
def test_phone_column_detection(tmp_path: Path, header: str, expected: str) -> None:
    with open_contacts(write(tmp_path, header + "\n"), country=None) as cf:
        assert cf.phone_column == expected


def test_override_columns_case_insensitively(tmp_path: Path) -> None:
    p = write(tmp_path, "who,digits,phone\nAnn,+61491570156,x\n")
    [c] = rows(p, phone_column="DIGITS", name_column="Who")
    assert isinstance(c, Contact) and (c.name, c.phone) == ("Ann", AU1)


def test_missing_named_column_lists_the_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "who,digits\nAnn,+61491570156\n")
    with pytest.raises(BadInput) as err:
        rows(p, phone_column="telephone")
    msg = str(err.value)
    assert str(p) in msg and "'telephone'" in msg and "'who', 'digits'" in msg
    assert err.value.exit_code == 2


def test_no_phone_column_is_fatal_and_names_file_and_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "name,city\nAnn,Sydney\n")
    with pytest.raises(BadInput, match=r"c\.csv: no phone column found.*'name', 'city'"):
        open_contacts(p, country=None)


def test_column_key() -> None:
    assert column_key("First Name") == "first_name"
    assert column_key(" E-mail 1 - Value ") == "e_mail_1_value"
    assert column_key("Prénom") == "prénom"


def test_duplicate_header_names_get_distinct_keys(tmp_path: Path) -> None:
    with open_contacts(write(tmp_path, "name,phone,Name\n"), country=None) as cf:
        assert cf.keys == ["name", "phone", "name_2"]


# --- fatal errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"\n\n", "no header"),
        (b",,,\n1,2,3\n", "no header"),
    ],
)
def test_no_header(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "c.csv"
    p.write_bytes(content)
    with pytest.raises(BadInput, match=match):
        open_contacts(p, country=None)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found"):
        open_contacts(tmp_path / "nope.csv", country=None)
    with pytest.raises(BadInput, match="directory"):
        open_contacts(tmp_path, country=None)


def test_nul_bytes_are_reported_with_the_line() -> None:
    with pytest.raises(BadInput, match=r"nul_bytes\.csv, row 3: binary data"):
        open_contacts(DATA / "nul_bytes.csv", country=None)


def test_random_garbage_file_is_bad_input() -> None:
    with pytest.raises(BadInput):
        rows(DATA / "garbage.csv")


def test_undecodable_even_as_cp1252(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_bytes(b"name,phone\nAnn \x81\x8d,+61491570156\n")  # bytes cp1252 leaves undefined
    with pytest.raises(BadInput, match="cannot decode"):
        open_contacts(p, country=None)


def test_too_many_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "phone," + ",".join(f"c{i}" for i in range(MAX_COLUMNS)) + "\n")
    with pytest.raises(BadInput, match=r"row 1: 1,?001 columns"):
        open_contacts(p, country=None)


def test_huge_field_is_reported_not_read(tmp_path: Path) -> None:
    # An unbalanced quote swallows the rest of the file into one field.
    filler = ("x" * 1000 + "\n") * (MAX_FIELD_BYTES // 1000 + 5)
    p = write(tmp_path, 'name,phone\n"Ann,+61491570156\n' + filler)
    with pytest.raises(BadInput, match=r"row 2: malformed CSV: a field is larger than"):
        rows(p)


def test_old_xls_and_broken_xlsx(tmp_path: Path) -> None:
    xls = tmp_path / "c.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(BadInput, match="xls"):
        open_contacts(xls, country=None)
    bad = tmp_path / "c.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BadInput, match="cannot read as an .xlsx"):
        open_contacts(bad, country=None)


def test_unknown_country() -> None:
    with pytest.raises(BadInput, match="unknown country 'XX'"):
        open_contacts(DATA / "utf8_bom_pipe.csv", country="XX")


# --- phone numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,country,expected",
    [
        ("+61 491 570 156", None, AU1),
        ("0061 491 570 156", None, AU1),
        ("'+61491570156", None, AU1),  # Excel's text prefix
        ("0491-570-156", "AU", AU1),
        ("(0491) 570.156", "AU", AU1),
        ("61491570156", "AU", AU1),  # the "+" lost by a spreadsheet
        ("+1 (201) 555-0123", None, "+12015550123"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("011 61 491 570 156", "US", AU1),
        ("\u202a+61 491 570 156\u202c", None, AU1),  # bidi marks from phone apps
        ("tel:+61491570156", None, AU1),
    ],
)
def test_normalize_phone(raw: str, country: str | None, expected: str) -> None:
    assert normalize_phone(raw, country) == expected


@pytest.mark.parametrize(
    "raw,country,reason",
    [
        ("0491 570 156", None, "no country code"),
        ("", None, "empty"),
        ("call me", None, "not a phone number"),
        ("+61 49", None, "too short"),
        ("+999 1234567", None, "unknown country code"),
        ("+1 200 555 0123", None, "not a valid number"),
    ],
)
def test_invalid_phone_reasons(raw: str, country: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhone) as err:
        normalize_phone(raw, country)
    assert reason in err.value.reason
    assert isinstance(err.value, ValueError)


def test_mobile_flag() -> None:
    assert parse_phone("+61491570156", None).mobile
    assert parse_phone("+12015550123", None).mobile  # FIXED_LINE_OR_MOBILE counts as mobile
    assert not parse_phone("+61 2 5550 1234", None).mobile


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"LANG": "en_US.UTF-8"}, "US"),
        ({"LC_ALL": "pt_BR.utf8", "LANG": "en_US.UTF-8"}, "BR"),
        ({"LANG": "C.UTF-8"}, None),
        ({"LANG": "POSIX"}, None),
        ({}, None),
    ],
)
def test_default_country(env: dict[str, str], expected: str | None) -> None:
    assert default_country(env) == expected


_VALID = [
    phonenumbers.format_number(
        phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.MOBILE),
        phonenumbers.PhoneNumberFormat.E164,
    )
    for r in ("AU", "GB", "US", "IN", "BR", "DE", "NG", "FR", "MX", "ZA")
]


@settings(max_examples=60, deadline=None)
@given(number=st.sampled_from(_VALID), data=st.data())
def test_formatting_variants_normalise_to_the_same_e164(number: str, data: st.DataObject) -> None:
    digits = number[1:]
    seps = data.draw(
        st.lists(st.sampled_from(["", " ", "-", ".", " - "]), min_size=len(digits), max_size=len(digits))
    )
    body = "".join(d + s for d, s in zip(digits, seps, strict=True)).rstrip(" -.")
    cc_len = len(str(phonenumbers.parse(number).country_code))
    if data.draw(st.booleans()):  # parentheses around the first group after the country code
        body = body[:cc_len] + " (" + body[cc_len : cc_len + 2] + ")" + body[cc_len + 2 :]
    prefix = data.draw(st.sampled_from(["+", "00", "+ ", "'+", "'00"]))
    raw = data.draw(st.sampled_from(["{}", " {} ", "\t{}"])).format(prefix + body)
    assert normalize_phone(raw, None) == number


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2000), header=st.booleans())
def test_random_bytes_raise_only_bad_input(tmp_path: Path, content: bytes, header: bool) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes(b"name,phone\n" + content if header else content)
    try:
        for item in read_contacts(p, country="AU"):
            assert isinstance(item, Contact | Reject)
    except BadInput:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
        min_size=1,
        max_size=5,
    ),
    delim=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_any_names_round_trip_through_csv(
    tmp_path: Path, names: list[str], delim: str, encoding: str
) -> None:
    p = tmp_path / "r.csv"
    with open(p, "w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, delimiter=delim)
        w.writerow(["name", "phone"])
        for n in names:
            w.writerow([n, "+61491570156"])
    got = [c for c in read_contacts(p, country=None) if isinstance(c, Contact)]
    expected = [n.strip() for n in names if n.strip()]
    assert [c.name for c in got if c.name] == expected
