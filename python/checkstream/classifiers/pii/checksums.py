"""Check-digit and range validators: they turn "looks like a number" into "is one".

Every recognizer that matches digits runs one of these, so random digit runs (order numbers,
timestamps, version strings) are not reported as PII.
"""

from __future__ import annotations

import ipaddress

# Lengths from the SWIFT IBAN registry. A country outside it is not an IBAN, whatever its mod-97
# check says: one random alphanumeric run in 97 passes that check.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def digits_only(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_valid(number: str) -> bool:
    """Luhn (mod 10) check over the digits of ``number``; separators are ignored."""
    digits = digits_only(number)
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer (IIN) ranges and the number lengths each scheme issues. A Luhn-valid digit run that
# starts like a Mastercard but has 13 digits is not a Mastercard.
_CARD_SCHEMES: tuple[tuple[tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    (((4, 4),), frozenset({13, 16, 19})),  # Visa
    (((51, 55), (2221, 2720)), frozenset({16})),  # Mastercard
    (((34, 34), (37, 37)), frozenset({15})),  # Amex
    (((300, 305), (309, 309), (36, 36), (38, 39)), frozenset({14, 16, 17, 18, 19})),  # Diners
    (((6011, 6011), (644, 649), (65, 65)), frozenset(range(16, 20))),  # Discover
    (((62, 62),), frozenset(range(16, 20))),  # UnionPay (622126-622925 co-branded Discover)
    (((3528, 3589),), frozenset(range(16, 20))),  # JCB
    (((50, 50), (56, 58), (63, 63), (67, 67)), frozenset(range(13, 20))),  # Maestro family
)  # fmt: skip

# Printed layouts other than "groups of four, the last one shorter" (Amex 4-6-5, Diners 4-6-4).
_CARD_LAYOUTS = frozenset({(4, 6, 5), (4, 6, 4)})


def card_issuer_valid(digits: str) -> bool:
    """A known issuer prefix together with a length that issuer uses."""
    for ranges, lengths in _CARD_SCHEMES:
        if len(digits) in lengths:
            for lo, hi in ranges:
                width = len(str(lo))
                if len(digits) >= width and lo <= int(digits[:width]) <= hi:
                    return True
    return False


def card_layout_valid(number: str) -> bool:
    """Digits written the way cards are printed: contiguous, or one separator (space or dash)
    used throughout between groups of four (the last group 1-4 digits), or Amex/Diners 4-6-5 /
    4-6-4. "42 020 7946 0958" is a phone number after a count, not a card."""
    seps = {ch for ch in number if not ch.isdigit()}
    if not seps:
        return True
    if len(seps) != 1 or not seps <= {" ", "-"}:
        return False
    groups = tuple(len(g) for g in number.split(seps.pop()))
    if groups in _CARD_LAYOUTS:
        return True
    return len(groups) >= 4 and all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


def card_valid(number: str) -> bool:
    """A payment card number: 13-19 digits laid out like a card, an issuer prefix with a
    length that issuer uses, and a valid Luhn digit."""
    digits = digits_only(number)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    return card_layout_valid(number) and card_issuer_valid(digits) and luhn_valid(digits)


def iban_valid(iban: str) -> bool:
    """ISO 13616: country code, two check digits, BBAN; the rearranged number mod 97 is 1."""
    compact = "".join(iban.split()).upper()
    if len(compact) < 15 or len(compact) > 34 or not compact.isalnum():
        return False
    country = compact[:2]
    if not country.isalpha() or not compact[2:4].isdigit():
        return False
    if IBAN_LENGTHS.get(country) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


_NINO_BAD_FIRST = set("DFIQUV")
_NINO_BAD_SECOND = set("DFIOQUV")
_NINO_BAD_PREFIXES = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def uk_nino_valid(nino: str) -> bool:
    """HMRC rules: prefix letters from the allowed sets, six digits, suffix A-D."""
    compact = "".join(nino.split()).upper()
    if len(compact) != 9:
        return False
    prefix, number, suffix = compact[:2], compact[2:8], compact[8]
    return (
        prefix.isalpha()
        and prefix[0] not in _NINO_BAD_FIRST
        and prefix[1] not in _NINO_BAD_SECOND
        and prefix not in _NINO_BAD_PREFIXES
        and number.isdigit()
        and suffix in "ABCD"
    )


def nhs_number_valid(number: str) -> bool:
    """NHS number: ten digits, the last a mod-11 check digit (a check value of 10 is invalid)."""
    digits = digits_only(number)
    if len(digits) != 10 or len(set(digits)) == 1:
        return False
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


# Numbers published in advertising and therefore never issued to a person.
_SSN_NEVER_ISSUED = {"078051120", "219099999", "123456789"}


def us_ssn_valid(ssn: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    digits = digits_only(ssn)
    if len(digits) != 9 or digits in _SSN_NEVER_ISSUED:
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


def ip_address_valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
