"""Message templates: placeholders, spintax, literal braces, and what is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabulk.errors import TemplateError
from wabulk.templates import MAX_BODY_CHARS, Template, body_problem


def test_placeholders_are_normalised_column_names() -> None:
    t = Template.parse("Hi {First Name}, from {CITY} ({ first_name })")
    assert t.placeholders == ("first_name", "city")
    assert t.render({"first_name": "Ann", "city": "Oslo"}, seed="s") == "Hi Ann, from Oslo (Ann)"


def test_literal_braces() -> None:
    t = Template.parse("{{name}} is literal, {name} is not; }} and {{ too")
    assert t.placeholders == ("name",)
    assert t.render({"name": "Ann"}, seed="s") == "{name} is literal, Ann is not; } and { too"


@pytest.mark.parametrize(
    "text",
    [
        "{0.__class__}",
        "{x.__class__.__mro__}",
        "{x[0]}",
        "{x!r}",
        "{x:>10}",
        "{0}",
        "{}",
        "{ }",
        "{name",
        "name}",
        "{a{b}}",
        "{__import__('os')}",
    ],
)
def test_unsafe_or_malformed_templates_are_rejected(text: str) -> None:
    with pytest.raises(TemplateError) as err:
        Template.parse(text)
    assert err.value.exit_code == 2


def test_error_says_what_is_allowed() -> None:
    with pytest.raises(TemplateError, match=r"invalid placeholder \{0\.__class__\}.*plain column names"):
        Template.parse("Hi {0.__class__}")


def test_empty_template() -> None:
    with pytest.raises(TemplateError, match="empty"):
        Template.parse("  \n")


def test_validate_lists_the_existing_columns() -> None:
    t = Template.parse("Hi {Nmae} from {city} and {zip}")
    with pytest.raises(TemplateError) as err:
        t.validate(["first_name", "city"])
    msg = str(err.value)
    assert "{Nmae}, {zip}, which are not columns" in msg
    assert "available: {first_name}, {city}, {name}, {phone}" in msg


def test_name_and_phone_are_always_available() -> None:
    Template.parse("Hi {name} ({phone})").validate(["city"])


def test_spintax_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    t = Template.parse("{Hi|Hello|Hey} {name}{!|.}")
    bodies = {t.render({"name": "Ann"}, seed=f"job\x00+6149157{i:04d}") for i in range(60)}
    assert bodies <= {f"{g} Ann{p}" for g in ("Hi", "Hello", "Hey") for p in "!."}
    assert len(bodies) == 6  # every combination shows up over 60 recipients
    for seed in ("a", "b", "job\x00+61491570156"):
        assert t.render({"name": "Ann"}, seed) == t.render({"name": "Ann"}, seed)


def test_spintax_pick_does_not_depend_on_the_process() -> None:
    # A stable hash, not hash(): the pick must survive a different PYTHONHASHSEED (another process).
    code = (
        "from wabulk.templates import Template; t = Template.parse('{a|b|c|d|e|f|g|h}');"
        "print(''.join(t.render({}, seed=str(i)) for i in range(40)))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    t = Template.parse("{a|b|c|d|e|f|g|h}")
    assert outs == {"".join(t.render({}, seed=str(i)) for i in range(40))}


def test_spintax_with_placeholders_and_empty_alternatives() -> None:
    t = Template.parse("{Hi {name}|Hello {city}|}!")
    assert t.placeholders == ("name", "city")
    outs = {t.render({"name": "Ann", "city": "Oslo"}, seed=str(i)) for i in range(40)}
    assert outs == {"Hi Ann!", "Hello Oslo!", "!"}


def test_fallback_when_the_first_alternative_is_a_column() -> None:
    t = Template.parse("{Hi|Hello} {name|there}, order {order} is ready").for_columns(["phone", "order"])
    seeds = [str(i) for i in range(30)]
    outs = {t.render({"name": "", "phone": "+1", "order": "B-100"}, seed=s) for s in seeds}
    assert outs == {"Hi there, order B-100 is ready", "Hello there, order B-100 is ready"}  # spintax kept
    assert t.render({"name": "Ann", "phone": "+1", "order": "B-1"}, seed="x").endswith(
        "Ann, order B-1 is ready"
    )


def test_fallback_chain_nested_text_and_empty_default() -> None:
    t = Template.parse("{nickname|First Name|dear {city} customer}").for_columns(
        ["nickname", "first_name", "city"]
    )
    assert t.placeholders == ("nickname", "first_name", "city")
    assert t.render({"nickname": "Annie", "first_name": "Ann", "city": "Oslo"}, "s") == "Annie"
    assert t.render({"nickname": " ", "first_name": "Ann", "city": "Oslo"}, "s") == "Ann"
    assert t.render({"nickname": "", "first_name": "", "city": "Oslo"}, "s") == "dear Oslo customer"
    assert Template.parse("Hi{ name|}!").for_columns([]).render({"name": ""}, "s") == "Hi!"


def test_without_the_column_it_stays_spintax() -> None:
    # "there" is a column in neither file; "order" is one only in the second.
    t = Template.parse("{order|there}")
    assert {t.for_columns([]).render({}, seed=str(i)) for i in range(30)} == {"order", "there"}
    assert t.for_columns(["order"]).render({"order": "B-7"}, seed="s") == "B-7"


def test_empty_placeholders_are_reported_but_fallbacks_are_not() -> None:
    t = Template.parse("{Hi|Hello} {name}, {city|your city} {zip}").for_columns(["city", "zip"])
    empty: list[str] = []
    t.render({"name": "", "city": "", "zip": " ", "phone": "+1"}, "s", empty)
    assert empty == ["name", "zip"]
    flat: list[str] = []
    Template.parse("Hi {name}").render({"name": ""}, "s", flat)
    assert flat == ["name"]


def test_pipe_outside_braces_is_text() -> None:
    assert Template.parse("a|b {name}").render({"name": "x"}, "s") == "a|b x"


def test_missing_variable_at_render_time() -> None:
    with pytest.raises(TemplateError, match=r"no value for \{city\}"):
        Template.parse("{city}").render({}, "s")


def test_values_are_not_reinterpreted() -> None:
    # A value that looks like a template stays text: no second expansion.
    assert Template.parse("{name}").render({"name": "{0.__class__} {{x}}"}, "s") == "{0.__class__} {{x}}"


def test_body_problem() -> None:
    assert body_problem("hi") is None
    assert "empty" in (body_problem(" \n ") or "")
    assert body_problem("x" * MAX_BODY_CHARS) is None
    assert "65,537 characters" in (body_problem("x" * (MAX_BODY_CHARS + 1)) or "")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_template_error(text: str) -> None:
    try:
        t = Template.parse(text)
    except TemplateError:
        return
    out = t.render(dict.fromkeys(t.placeholders, "V"), seed="s")
    assert isinstance(out, str)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=40))
def test_text_without_braces_renders_unchanged(text: str) -> None:
    if text.strip():
        assert Template.parse(text).render({}, "s") == text
