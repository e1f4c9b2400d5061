"""PII recognizers: valid vs invalid checksums, boundaries, overlaps and streaming holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream.classifiers import PII_ENTITY_TYPES, find_pii, pii_hold_from, redact_pii
from checkstream.classifiers.pii import checksums


def entities(text: str, only: list[str] | None = None) -> list[tuple[str, str]]:
    return [(m.entity, text[m.start : m.end]) for m in find_pii(text, only)]


def test_entity_types_contract() -> None:
    assert {
        "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "UK_NINO", "NHS_NUMBER", "US_SSN",
        "IP_ADDRESS", "SECRET",
    } <= PII_ENTITY_TYPES  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.smith@example.com today", "john.smith@example.com"),
        ("a+tag@sub.example.co.uk.", "a+tag@sub.example.co.uk"),
    ],
)
def test_email(text: str, expected: str) -> None:
    assert entities(text) == [("EMAIL", expected)]


@pytest.mark.parametrize(
    "text", ["user@localhost", "@handle", "a@b", "me@ example.com", "icon@2x.png", "logo@3x.svg"]
)
def test_email_negatives(text: str) -> None:
    assert entities(text, ["EMAIL"]) == []


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"],
)
def test_card_valid(number: str) -> None:
    assert entities(f"pay with {number} now") == [("CREDIT_CARD", number)]


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1112", "1234567890123452", "0000000000000000", "4111111111111111111111"],
)
def test_card_invalid(number: str) -> None:
    assert entities(f"ref {number}", ["CREDIT_CARD"]) == []


def test_card_with_trailing_digits_group_is_trimmed() -> None:
    assert entities("card 4111 1111 1111 1111 12", ["CREDIT_CARD"]) == [
        ("CREDIT_CARD", "4111 1111 1111 1111")
    ]


@pytest.mark.parametrize(
    "iban", ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "gb82west12345698765432"]
)
def test_iban_valid(iban: str) -> None:
    assert entities(f"send to {iban} please", ["IBAN"]) == [("IBAN", iban)]


@pytest.mark.parametrize("iban", ["GB82 WEST 1234 5698 7654 33", "DE8937040044053201300"])
def test_iban_invalid(iban: str) -> None:
    assert entities(f"send to {iban}", ["IBAN"]) == []


def test_iban_validator_rules() -> None:
    assert checksums.iban_valid("gb82west12345698765432")
    assert not checksums.iban_valid("XX82WEST12345698765432!")


@pytest.mark.parametrize("nino", ["AB 12 34 56 C", "JG103759A", "ce123456d"])
def test_uk_nino_valid(nino: str) -> None:
    assert entities(f"NI number {nino}.", ["UK_NINO"]) == [("UK_NINO", nino)]


@pytest.mark.parametrize("nino", ["DA123456C", "AO123456C", "GB123456A", "AB123456E", "QQ123456C"])
def test_uk_nino_invalid(nino: str) -> None:
    assert entities(f"NI number {nino}", ["UK_NINO"]) == []


def test_nhs_number() -> None:
    assert entities("NHS 943 476 5919", ["NHS_NUMBER"]) == [("NHS_NUMBER", "943 476 5919")]
    assert entities("NHS 943 476 5918", ["NHS_NUMBER"]) == []
    assert entities("NHS 9434765919", ["NHS_NUMBER"]) == [("NHS_NUMBER", "9434765919")]
    # A check digit of 10 is never valid; 1111111111 is excluded as a repeated digit.
    assert not checksums.nhs_number_valid("1111111111")


@pytest.mark.parametrize("ssn", ["536-22-1234", "001 01 0001"])
def test_us_ssn_valid(ssn: str) -> None:
    assert entities(f"SSN {ssn}", ["US_SSN"]) == [("US_SSN", ssn)]


@pytest.mark.parametrize(
    "ssn", ["000-12-3456", "666-12-3456", "901-12-3456", "536-00-1234", "536-22-0000",
            "078-05-1120", "536-22 1234", "536221234"],
)  # fmt: skip
def test_us_ssn_invalid(ssn: str) -> None:
    assert entities(f"SSN {ssn}", ["US_SSN"]) == []


def test_ip_addresses() -> None:
    text = (
        "hosts 192.168.1.20, 2001:db8::1 and ::1; not 999.1.1.1, 1.2.3.4.5, 12:30:45, std::vector"
    )
    assert entities(text, ["IP_ADDRESS"]) == [
        ("IP_ADDRESS", "192.168.1.20"), ("IP_ADDRESS", "2001:db8::1"), ("IP_ADDRESS", "::1"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "secret",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ghp_" + "a1B2" * 9,
        "github_pat_" + "A1b2_" * 10,
        "xoxb-123456789012-abcdefghijkl",
        "sk-proj-" + "Ab3_" * 10,
        "sk-ant-api03-" + "xY9-" * 10,
        "AIza" + "SyA1" * 8 + "abc",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
    ],
)
def test_secrets(secret: str) -> None:
    assert entities(f"here: {secret} ", ["SECRET"]) == [("SECRET", secret.rstrip())]


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn is a typo for scikit-learn",
        "task-management-tool-for-teams-and-individuals-2024-edition",
        "AKIA is not a key",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
    ],
)
def test_secret_negatives(text: str) -> None:
    assert entities(text, ["SECRET"]) == []


def test_phone_numbers() -> None:
    text = "call 020 7946 0958, +44 7911 123456 or +1 415 555 2671 (not 2024-01-15 or 12345)"
    assert entities(text) == [
        ("PHONE", "020 7946 0958"), ("PHONE", "+44 7911 123456"), ("PHONE", "+1 415 555 2671"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United scored in the 89th minute",
        "hello, the skills workshop is on 2024-01-15 at 10:30",
        "Order 12345678 shipped; version 1.2.3 released; 3.14159 is pi",
        "The assistant classifies text; Python 3.11.7 and numpy 2.4.6.",
        "Room 101, extension 4455, population 8,982,000 in 2019",
    ],
)
def test_no_false_positives_on_benign_text(text: str) -> None:
    assert find_pii(text) == []


def test_redaction_and_placeholders() -> None:
    text = "Email a@b.com, card 4111111111111111."
    matches = find_pii(text)
    assert [m.placeholder for m in matches] == ["[EMAIL]", "[CREDIT_CARD]"]
    assert redact_pii(text) == "Email [EMAIL], card [CREDIT_CARD]."


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown PII entity type"):
        find_pii("x", ["EMAIL", "PASSPORT"])
    with pytest.raises(TypeError, match="collection"):
        find_pii("x", "EMAIL")
    with pytest.raises(TypeError, match="expects str"):
        find_pii(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects str"):
        pii_hold_from(None)  # type: ignore[arg-type]


def test_hold_from_basics() -> None:
    assert pii_hold_from("") is None
    assert pii_hold_from("call me at 020 79") == 11
    assert pii_hold_from("mail to john@exa") == 8
    assert pii_hold_from("key -----BEGIN RSA PRIV") == 4
    # A finished entity followed by more text is no longer held (find_pii redacts it).
    assert pii_hold_from("a@b.com is it") == 11
    assert pii_hold_from("card 4111 1111 1111 1111 was used.", ["CREDIT_CARD"]) is None


SAMPLES = [
    "john.smith@example.com",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "AB 12 34 56 C",
    "943 476 5919",
    "536-22-1234",
    "192.168.1.20",
    "2001:db8::1",
    "+44 7911 123456",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2" * 9,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
]


@settings(max_examples=200, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    prefix=st.sampled_from(["", "Sure, here it is: ", "value\n", "x " * 200]),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_hold_covers_every_partial_entity(sample: str, prefix: str, cut: float) -> None:
    """Zero leak: a stream cut anywhere inside an entity holds from the entity's start."""
    k = max(1, round(cut * len(sample)))
    partial = prefix + sample[:k]
    hold = pii_hold_from(partial)
    assert hold is not None and hold <= len(prefix), (partial, hold)


@pytest.mark.parametrize("sample", SAMPLES)
def test_samples_are_found_in_full(sample: str) -> None:
    text = f"value: {sample} end"
    assert [text[m.start : m.end] for m in find_pii(text)] == [sample]


@pytest.mark.parametrize("prefix", ["", "Sure, here it is: ", "x " * 200])
@pytest.mark.parametrize("sample", SAMPLES)
def test_hold_every_cut_point(sample: str, prefix: str) -> None:
    for k in range(1, len(sample) + 1):
        hold = pii_hold_from(prefix + sample[:k])
        assert hold is not None and hold <= len(prefix), (sample[:k], hold)


def test_offsets_are_character_offsets_in_unicode_text() -> None:
    text = "📧 Ünïcödé → write to jürgen@example.de or a@b.com 🙂"
    spans = [(m.entity, text[m.start : m.end]) for m in find_pii(text)]
    assert spans == [("EMAIL", "jürgen@example.de"), ("EMAIL", "a@b.com")]
    assert entities("mail 山田@例え.jp now") == [("EMAIL", "山田@例え.jp")]
    assert pii_hold_from("write to jürg") == 9
    text2 = "😀😀 card 4111 1111 1111 1111"
    (m,) = find_pii(text2)
    assert text2[m.start : m.end] == "4111 1111 1111 1111"


def test_hold_respects_entity_filter() -> None:
    assert pii_hold_from("secret -----BEGIN RSA", ["EMAIL"]) == 18  # only the word "RSA"
    assert pii_hold_from("secret -----BEGIN RSA", ["SECRET"]) == 7
