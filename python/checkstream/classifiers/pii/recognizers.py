"""Pattern recognizers for PII and secrets: a regex proposes a span, a validator confirms it.

Every pattern is anchored on word boundaries (``(?<![\\w])`` / ``(?![\\w])``), never on bare
substrings, so "Scunthorpe"-style hits inside longer words or digit runs cannot happen. Digit
patterns are confirmed by a check digit or range rule (``checksums``); phone numbers by the
``phonenumbers`` library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
import regex
from phonenumbers import CountryCodeSource

from checkstream.classifiers.pii import checksums


@dataclass(frozen=True)
class PiiMatch:
    """One PII span: ``text[start:end]`` is an ``entity``; ``placeholder`` replaces it."""

    entity: str
    start: int
    end: int
    placeholder: str


@dataclass(frozen=True)
class Recognizer:
    entity: str
    pattern: regex.Pattern[str]
    # A pattern whose partial match at the end of a stream marks text that may still become this
    # entity; usually looser than ``pattern`` (no validator can run on half a number).
    grow: regex.Pattern[str]
    validate: Callable[[str], bool] | None = None
    # Lower wins when two recognizers claim overlapping spans.
    priority: int = 50
    # Greedy digit/group patterns may swallow a following group; when the whole candidate
    # fails validation, retry it cut at each group boundary (never for e-mails or secrets).
    trim: bool = False


def _c(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.VERSION0)


_B = r"(?<![\w])"  # no word character before
_E = r"(?![\w])"  # no word character after

# Unicode-aware (RFC 6531 local parts, IDN domains): "jürgen@exämple.de" is an address too.
_EMAIL = _c(
    r"(?<![\w.%+-])[^\W_][\w.%+-]*@[^\W_](?:[\w-]*[^\W_])?"
    r"(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,24}(?![\w-])"
)
# Card: 13-19 digits in groups separated by single spaces or dashes.
_CARD = _c(_B + r"\d(?:[ -]?\d){12,18}" + _E)
_IBAN = _c(r"(?i)" + _B + r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}" + _E)
_IBAN_GROW = _c(r"(?i)" + _B + r"[A-Z]{1,2}(?:\d{1,2}[ A-Z0-9]{0,40})?")
_NINO = _c(r"(?i)" + _B + r"[A-Z]{2}[ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-D]" + _E)
_NINO_GROW = _c(r"(?i)" + _B + r"[A-Z]{1,2}(?:[ ]?\d{2}){0,3}(?:[ ]?\d)?[ ]?[A-D]?")
_NHS = _c(_B + r"\d{3}[ -]?\d{3}[ -]?\d{4}" + _E)
# SSNs only with separators: a bare nine-digit run is far more often something else.
_SSN = _c(_B + r"\d{3}([- ])\d{2}\1\d{4}" + _E)
_IPV4 = _c(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV4_GROW = _c(r"(?<![\w.])\d{1,3}(?:\.\d{0,3}){0,3}")
_IPV6 = _c(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    # never end on a lone ":" ("::1: next" is the address "::1" then punctuation)
    r"(?<![^:]:)(?![\w]|:[\w:])"
)
_IPV6_GROW = _c(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|:)[0-9A-Fa-f:.]{0,44}")
# A leading "(" belongs to the number only when it opens an area code: "(212) 555-0187", but
# not "(020 7946 0958" after an unbalanced bracket.
_PHONE = _c(r"(?<![\w+])(?:\+|\((?=\d{1,5}\)))?\d[\d ().-]{5,20}\d" + _E)
# Grow patterns are plain character runs on purpose: ``regex`` prefers a full match to a partial
# one, so a structured pattern would stop before a trailing separator ("4111 ") and miss it.
_DIGITS_GROW = _c(r"(?<![\w+])[+(]?\d[\d ().-]{0,30}")
_EMAIL_GROW = _c(r"(?<![\w.%+-])[^\W_][\w.%+-]*(?:@[\w.-]*)?")

_SECRET_PARTS = (
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",  # AWS access key id
    r"(?i:aws_?secret_?access_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}",  # AWS secret
    r"gh[pousr]_[A-Za-z0-9]{36,255}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{40,255}",  # GitHub fine-grained PAT
    r"xox[abposr]-[A-Za-z0-9-]{10,250}",  # Slack tokens
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}",  # Slack webhook
    r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_-]{32,250}",  # OpenAI / Anthropic keys
    r"(?:sk|rk)_live_[A-Za-z0-9]{20,250}",  # Stripe
    r"AIza[0-9A-Za-z_-]{35}",  # Google API key
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab PAT
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    # PEM private key; a key cut off before its END line is still a leaked key.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?:\s*[A-Za-z0-9+/=]+)*)",
)
_SECRET = _c(r"(?<![\w-])(?:" + "|".join(_SECRET_PARTS) + r")(?![\w-])")
_SECRET_GROW = _c(
    r"(?<![\w-])(?:A(?:K|S|B|C)?[A-Z0-9]{0,18}|g(?:h[pousr]?_?|ithub_pat_?)[A-Za-z0-9_]{0,255}"
    r"|x(?:ox[abposr]?-?)[A-Za-z0-9-]{0,250}|[sr]k[-_][A-Za-z0-9_-]{0,250}"
    r"|AIza[0-9A-Za-z_-]{0,35}|glpat-[A-Za-z0-9_-]*|eyJ[A-Za-z0-9_.-]*"
    r"|-{1,5}(?:B(?:E(?:G(?:I(?:N(?: [A-Z ]*(?:-{1,5}[A-Za-z0-9+/=\s-]*)?)?)?)?)?)?)?)"
)


# File extensions that are not top-level domains: "icon@2x.png" is an asset name, not an address.
_NOT_TLDS = frozenset(
    {
        "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "mjs", "ts",
        "tsx", "jsx", "json", "yaml", "yml", "toml", "txt", "csv", "pdf", "html", "htm", "xml",
        "lock",
    }
)  # fmt: skip


def _email_valid(candidate: str) -> bool:
    return candidate.rsplit(".", 1)[-1].lower() not in _NOT_TLDS


_FIRST_GROUP = regex.compile(r"\s*\(?(\d+)")


def _national_shape(candidate: str, digits: str) -> bool:
    """How UK and US numbers are written without "+": a cheap filter before the costly parse.

    UK: trunk "0" and 8-11 digits; US: ten digits with an area code 2-9, or "1" and ten more;
    either may be dialled through an international prefix (00 / 011). The first group is an
    area code or prefix (3-5 digits), "1", or the whole number: "12 34 56 78 90 12" is a list.
    """
    first = _FIRST_GROUP.match(candidate)
    if first is None:
        return False
    head = first.group(1)
    if digits.startswith(("00", "011")):
        return True
    if digits[0] == "0":
        shape = 8 <= len(digits) <= 11
    else:
        shape = (len(digits) == 10 and digits[0] != "1") or (len(digits) == 11 and digits[0] == "1")
    return shape and (3 <= len(head) <= 5 or head == digits or head == "1")


# Candidates are re-validated as a stream's window grows and at every group start of a digit
# run; the parse is the costly step, so repeated candidates are answered from a cache.
@lru_cache(maxsize=4096)
def _phone_valid(candidate: str) -> bool:
    digits = checksums.digits_only(candidate)
    if not 7 <= len(digits) <= 15:
        return False
    # At most one bracketed group, closed: "(212) 555-0187", "+44 (0)20 ..."; an unclosed "("
    # is punctuation between two other numbers.
    if candidate.count("(") != candidate.count(")") or candidate.count("(") > 1:
        return False
    if "(" in candidate and candidate.index("(") > candidate.index(")"):
        return False
    international = candidate.lstrip().startswith("+")
    if not international and not _national_shape(candidate, digits):
        return False
    # International numbers parse on their own; national ones are tried as UK then US, the
    # jurisdictions the shipped policy packs target.
    regions = (None,) if international else ("GB", "US")
    for region in regions:
        try:
            number = phonenumbers.parse(candidate, region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            continue
        # Without a "+", phonenumbers also reads leading digits as a country code ("44 020 7946
        # 0958"): then they are more likely a count or a reference in front of the number. The
        # US "1-800-..." is the exception: "1" is how those numbers are dialled at home.
        from_digits = number.country_code_source == CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN
        if from_digits and not (region == "US" and len(digits) == 11 and digits[0] == "1"):
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _nhs_valid(candidate: str) -> bool:
    # NHS numbers are printed 3-3-4 with spaces; the same digits with dashes that also make a
    # valid phone number ("212-555-9242", one in eleven passes mod 11) are read as the phone.
    if "-" in candidate and _phone_valid(candidate):
        return False
    return checksums.nhs_number_valid(candidate)


RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer("SECRET", _SECRET, _SECRET_GROW, None, priority=0),
    Recognizer("EMAIL", _EMAIL, _EMAIL_GROW, _email_valid, priority=10),
    Recognizer("IBAN", _IBAN, _IBAN_GROW, checksums.iban_valid, priority=20, trim=True),
    Recognizer("CREDIT_CARD", _CARD, _DIGITS_GROW, checksums.card_valid, priority=30, trim=True),
    Recognizer("US_SSN", _SSN, _DIGITS_GROW, checksums.us_ssn_valid, priority=40),
    Recognizer("UK_NINO", _NINO, _NINO_GROW, checksums.uk_nino_valid, priority=40),
    Recognizer("NHS_NUMBER", _NHS, _DIGITS_GROW, _nhs_valid, priority=45),
    Recognizer("IP_ADDRESS", _IPV4, _IPV4_GROW, checksums.ip_address_valid, priority=50),
    Recognizer("IP_ADDRESS", _IPV6, _IPV6_GROW, checksums.ip_address_valid, priority=50),
    Recognizer("PHONE", _PHONE, _DIGITS_GROW, _phone_valid, priority=60, trim=True),
)

PII_ENTITY_TYPES: frozenset[str] = frozenset(r.entity for r in RECOGNIZERS)

# Partial matches are looked for only in this many trailing characters (PEM keys excepted):
# no other entity is longer, and it keeps each streaming call O(1) in the stream length.
_HOLD_SCAN_CHARS = 320


def placeholder_for(entity: str) -> str:
    return f"[{entity}]"


def _selected(entities: object) -> tuple[Recognizer, ...]:
    if entities is None:
        return RECOGNIZERS
    if isinstance(entities, str):
        raise TypeError("entities must be a collection of entity names, not a single string")
    wanted = set(entities)  # type: ignore[call-overload]
    unknown = wanted - PII_ENTITY_TYPES
    if unknown:
        raise ValueError(
            f"unknown PII entity type(s) {sorted(unknown)}; known: {sorted(PII_ENTITY_TYPES)}"
        )
    return tuple(r for r in RECOGNIZERS if r.entity in wanted)


def _strip_trailing(text: str, start: int, end: int) -> int:
    # Phone candidates may swallow a trailing separator such as " -" before a digit-free word.
    while end > start and text[end - 1] in " .-(":
        end -= 1
    return end
