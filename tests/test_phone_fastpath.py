"""The importer's phone fast paths must give exactly phonenumbers' answers (they exist only for speed)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabulk.contacts import _fast_e164, fast_number_type, parse_phone

CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _examples() -> list[phonenumbers.PhoneNumber]:
    """phonenumbers' own example number of every type in every region (valid numbers of each kind)."""
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
            phonenumbers.PhoneNumberType.PREMIUM_RATE,
            phonenumbers.PhoneNumberType.PAGER,
        ):
            ex = phonenumbers.example_number_for_type(region, t)
            if ex is not None:
                out.append(ex)
    return out


EXAMPLES = _examples()


def test_fast_number_type_matches_phonenumbers_on_every_example_number() -> None:
    assert len(EXAMPLES) > 500
    for num in EXAMPLES:
        assert fast_number_type(num) == phonenumbers.number_type(num), num


def test_fast_e164_matches_parse_on_every_example_number() -> None:
    taken = 0
    for num in EXAMPLES:
        e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        fast = _fast_e164(e164)
        if fast is not None:
            taken += 1
            ref = phonenumbers.parse(e164, None)
            assert (fast.country_code, phonenumbers.national_significant_number(fast)) == (
                ref.country_code,
                phonenumbers.national_significant_number(ref),
            ), e164
    assert taken > len(EXAMPLES) // 2  # the fast path is actually used for typical E.164 input


@settings(max_examples=3000, deadline=None)
@given(
    cc=st.sampled_from(CODES),
    rest=st.text("0123456789", min_size=4, max_size=13),
    sep=st.sampled_from(["", " ", "-", "."]),
)
def test_fast_path_agrees_with_phonenumbers_on_random_input(cc: int, rest: str, sep: str) -> None:
    text = f"+{cc}{sep}{rest}"
    fast = _fast_e164(text)
    try:
        ref = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        assert fast is None
        return
    if fast is not None:
        assert fast.country_code == ref.country_code
        assert phonenumbers.national_significant_number(fast) == phonenumbers.national_significant_number(ref)
    assert fast_number_type(ref) == phonenumbers.number_type(ref)


@pytest.mark.parametrize(
    "raw",
    [
        "+44 7700 900123",
        "+1 415-555-0123",
        "+61.412.345.678",
        "+4407700900123",
        "+44 (0) 7700 900123",
        "+1 (415) 555 0123",
        "+7 8123456789",
    ],
)
def test_parse_phone_gives_phonenumbers_e164_and_type(raw: str) -> None:
    try:
        ref = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        pytest.skip("not parseable")
    if not phonenumbers.is_valid_number(ref):
        with pytest.raises(ValueError):
            parse_phone(raw, None)
        return
    got = parse_phone(raw, None)
    assert got.e164 == phonenumbers.format_number(ref, phonenumbers.PhoneNumberFormat.E164)
    assert got.mobile == (
        phonenumbers.number_type(ref)
        in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    )


REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@settings(max_examples=4000, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    digits=st.text("0123456789", min_size=3, max_size=14),
    style=st.sampled_from(["plain", "spaced", "paren"]),
)
def test_national_fast_path_agrees_with_parse(region: str, digits: str, style: str) -> None:
    from wabulk.contacts import _fast_national

    if style == "spaced":
        text = " ".join(digits[i : i + 3] for i in range(0, len(digits), 3))
    elif style == "paren" and len(digits) > 4:
        text = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    else:
        text = digits
    fast = _fast_national(text, region)
    if fast is None:
        return
    ref = phonenumbers.parse(text, region)
    assert fast.country_code == ref.country_code, text
    assert phonenumbers.national_significant_number(fast) == phonenumbers.national_significant_number(ref), (
        text
    )


def test_national_fast_path_on_example_numbers() -> None:
    taken = 0
    for num in EXAMPLES:
        region = phonenumbers.region_code_for_number(num)
        if region in (None, "001"):
            continue
        text = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
        from wabulk.contacts import _clean, _fast_national

        text = _clean(text)
        fast = _fast_national(text, region)
        if fast is not None:
            taken += 1
            ref = phonenumbers.parse(text, region)
            assert (fast.country_code, phonenumbers.national_significant_number(fast)) == (
                ref.country_code,
                phonenumbers.national_significant_number(ref),
            ), text
    assert taken > 50


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("1411 0011 44 7700 900123", "AU"),
        ("011 44 7700 900123", "US"),
        ("810 44 7700 900123", "RU"),
        ("1 415 555 0123", "US"),
        ("44 7700 900123", "GB"),
        ("(415) 555-0123", "US"),
        ("7700 900123", "GB"),
    ],
)
def test_national_fast_path_declines_what_parse_reads_differently(text: str, region: str) -> None:
    from wabulk.contacts import _fast_national

    fast = _fast_national(text, region)
    try:
        ref = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        assert fast is None
        return
    if fast is not None:
        assert (fast.country_code, fast.national_number) == (ref.country_code, ref.national_number)
