//! Customer identifiers and their normalisation: the ids source systems give a customer, their
//! e-mail addresses and phone numbers, in the one canonical form identity resolution compares.

use crate::id::uuid_id;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

uuid_id!(
    /// The hub's id of a customer (a UUID v7, so ids sort by creation time).
    CustomerId
);

/// What kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdentifierKind {
    /// The customer's id in one source system.
    SourceId,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
}

impl IdentifierKind {
    /// The stable text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::SourceId => "source_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
        }
    }
}

/// One identifier of a customer, already normalised (see [`normalise_email`] and
/// [`normalise_phone`]): two identifiers are the same customer's exactly when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Identifier {
    /// The customer's id in one source system, e.g. (`salesforce-eu`, `0035g00000XyZ`).
    SourceId {
        /// The configured source system name.
        source: String,
        /// The id the source gives the customer.
        id: String,
    },
    /// A normalised e-mail address (trimmed, lowercase, ASCII domain).
    Email(String),
    /// A phone number in E.164 (`+351912345678`).
    Phone(String),
}

impl Identifier {
    /// The kind of identifier.
    pub fn kind(&self) -> IdentifierKind {
        match self {
            Identifier::SourceId { .. } => IdentifierKind::SourceId,
            Identifier::Email(_) => IdentifierKind::Email,
            Identifier::Phone(_) => IdentifierKind::Phone,
        }
    }

    /// The value as stored (`source:id` for a source id).
    pub fn value(&self) -> String {
        match self {
            Identifier::SourceId { source, id } => format!("{source}:{id}"),
            Identifier::Email(v) | Identifier::Phone(v) => v.clone(),
        }
    }

    /// The identifier stored as ([`IdentifierKind::as_str`], [`Identifier::value`]); `None`
    /// for an unknown kind or a source id without its `source:` part.
    pub fn from_stored(kind: &str, value: &str) -> Option<Identifier> {
        match kind {
            "source_id" => value
                .split_once(':')
                .map(|(source, id)| Identifier::SourceId {
                    source: source.to_owned(),
                    id: id.to_owned(),
                }),
            "email" => Some(Identifier::Email(value.to_owned())),
            "phone" => Some(Identifier::Phone(value.to_owned())),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Normalisation
//
// Identity resolution compares identifiers by equality, so everything that makes two spellings of
// one identifier differ (case, surrounding whitespace, Unicode forms, phone formatting) is removed
// here, once, and nothing else is: anything more aggressive would merge different people.

/// Longest local part (before the `@`) of an e-mail address, in UTF-8 bytes (RFC 5321 §4.5.3.1.1,
/// which RFC 6531 keeps in octets for non-ASCII addresses).
pub const MAX_EMAIL_LOCAL_PART: usize = 64;

/// Longest e-mail address, in UTF-8 bytes (the RFC 5321 path limit of 256 less the angle brackets).
pub const MAX_EMAIL: usize = 254;

/// Longest id a source may give a customer, in UTF-8 bytes.
pub const MAX_SOURCE_ID: usize = 256;

/// Longest domain name in its ASCII form (RFC 1035, without the root's trailing dot).
const MAX_DOMAIN: usize = 253;

/// Longest label of a domain name (RFC 1035).
const MAX_LABEL: usize = 63;

/// Characters that may not appear unquoted in a local part (RFC 5322 `specials` less the dot).
/// Quoted local parts are not accepted: they are vanishingly rare in real mailboxes and in
/// exported records nearly always mean two addresses or a display name glued together.
const LOCAL_PART_SPECIALS: &[char] = &['(', ')', '<', '>', '[', ']', ':', ';', ',', '\\', '"'];

/// Why a value is not a well-formed identifier of its kind. Descriptions never repeat the value
/// itself (it is personal data), so they are safe to log and to return as a field violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierProblem {
    /// Nothing but whitespace.
    #[error("empty value")]
    Empty,
    /// An e-mail address without `@`.
    #[error("not an e-mail address: missing @")]
    MissingAt,
    /// An e-mail address with more than one `@` (quoted local parts are not accepted).
    #[error("not an e-mail address: more than one @")]
    MoreThanOneAt,
    /// Nothing before the `@`.
    #[error("not an e-mail address: nothing before the @")]
    EmptyLocalPart,
    /// The part before the `@` is longer than [`MAX_EMAIL_LOCAL_PART`] bytes.
    #[error("not an e-mail address: the part before the @ is longer than 64 bytes")]
    LocalPartTooLong,
    /// The part before the `@` holds a character an address cannot have (whitespace, control,
    /// invisible or one of `()<>[]:;,\"`).
    #[error("not an e-mail address: the part before the @ contains {}", describe_char(*.0))]
    LocalPartCharacter(char),
    /// Nothing after the `@`.
    #[error("not an e-mail address: nothing after the @")]
    EmptyDomain,
    /// The domain has a single label (`user@localhost`).
    #[error("not an e-mail address: the domain has no dot")]
    DomainWithoutDot,
    /// The domain is not a valid (internationalised) domain name.
    #[error("not an e-mail address: the domain is not a valid domain name")]
    InvalidDomain,
    /// The whole address is longer than [`MAX_EMAIL`] bytes.
    #[error("not an e-mail address: longer than 254 bytes")]
    EmailTooLong,
    /// The default region is not an ISO 3166 alpha-2 code the phone-number metadata knows.
    #[error("unknown default phone region {region:?} (expected an ISO 3166 alpha-2 code like PT)")]
    UnknownRegion {
        /// The region as configured.
        region: String,
    },
    /// No phone number can be read from the value at all.
    #[error("not a phone number")]
    NotAPhoneNumber,
    /// A national number (no `+` or `00`) and no default region to read it in.
    #[error("not a phone number in international format (+…), and no default region is set")]
    MissingCountryCode,
    /// A national number that is not a valid number of the default region.
    #[error("not a valid phone number for region {region}")]
    InvalidPhoneForRegion {
        /// The default region it was read in.
        region: String,
    },
    /// An international number that is not a valid number of its country.
    #[error("not a valid phone number")]
    InvalidPhone,
    /// The source system name is empty.
    #[error("the source system name is empty")]
    BlankSource,
    /// The source customer id holds a control or invisible character.
    #[error("the source customer id contains {}", describe_char(*.0))]
    SourceIdCharacter(char),
    /// The source customer id is longer than [`MAX_SOURCE_ID`] bytes.
    #[error("the source customer id is longer than 256 bytes")]
    SourceIdTooLong,
}

impl IdentifierProblem {
    /// Why the value is invalid, in a sentence a caller can act on (for a `FieldViolation`).
    pub fn description(&self) -> String {
        self.to_string()
    }
}

/// A character for a message: printable ones quoted, the others as their code point.
fn describe_char(c: char) -> String {
    if c.is_whitespace() || c.is_control() || is_invisible(c) {
        format!("the invisible character U+{:04X}", u32::from(c))
    } else {
        format!("{c:?}")
    }
}

/// Whitespace, control characters and the zero-width characters that exports and copy-paste leave
/// around values (byte-order mark, zero-width space/joiners, word joiner).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// The value without surrounding whitespace and invisible characters.
fn trim_invisible(raw: &str) -> &str {
    raw.trim_matches(is_invisible)
}

/// Normalises an e-mail address: trims it, lowercases it, and converts its domain to ASCII with
/// IDNA (UTS #46), so `  John.Doe@Bücher.DE ` becomes `john.doe@xn--bcher-kva.de`.
///
/// The address is split at its last `@`. The local part must be 1 to 64 bytes without whitespace,
/// control, invisible or special characters (`()<>[]:;,\"`, or another `@`); quoted local parts are
/// not accepted. The domain must have a dot and only valid labels (letters, digits and inner
/// hyphens, 1 to 63 bytes each, not an all-numeric top-level label); one trailing dot is dropped.
/// The whole address may have at most 254 bytes.
///
/// Judgement calls:
/// - Plus-tags (`jane+news@`) and dots (`j.a.n.e@`) are kept. Gmail ignores them, but most
///   providers do not, and for those `jane+a@` and `jane+b@` (or `j.ane@` and `ja.ne@`) can be
///   different mailboxes and different people: a missed link is cheaper than a wrong merge.
/// - Non-ASCII local parts (`josé@correio.pt`) are accepted, as SMTPUTF8 (RFC 6531) allows. They
///   are lowercased with Unicode case mapping and put in NFC (RFC 6532 §3.1), so a composed and a
///   decomposed `é` are the same address; no compatibility folding (NFKC) is done, since that could
///   merge addresses that really differ.
/// - The local part is lowercased although RFC 5321 lets it be case-sensitive: no provider in use
///   treats case as significant, and records from different systems spell case differently.
pub fn normalise_email(raw: &str) -> Result<Identifier, IdentifierProblem> {
    let trimmed = trim_invisible(raw);
    if trimmed.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    let (local, domain) = trimmed
        .rsplit_once('@')
        .ok_or(IdentifierProblem::MissingAt)?;
    let local = normalise_local_part(local)?;
    let domain = normalise_domain(domain)?;
    let email = format!("{local}@{domain}");
    if email.len() > MAX_EMAIL {
        return Err(IdentifierProblem::EmailTooLong);
    }
    Ok(Identifier::Email(email))
}

/// Lowercases and NFC-normalises a local part, rejecting what no mailbox name can hold.
fn normalise_local_part(local: &str) -> Result<String, IdentifierProblem> {
    use unicode_normalization::UnicodeNormalization;

    if local.is_empty() {
        return Err(IdentifierProblem::EmptyLocalPart);
    }
    let local: String = if local.is_ascii() {
        local.to_ascii_lowercase()
    } else {
        local
            .nfc()
            .collect::<String>()
            .to_lowercase()
            .nfc()
            .collect()
    };
    // Checked on the normalised form: a canonical equivalent of a special character (the Greek
    // question mark U+037E is `;` under NFC) must not pass here and then fail when the stored
    // address is read back and normalised again.
    if let Some(c) = local
        .chars()
        .find(|&c| c == '@' || is_invisible(c) || LOCAL_PART_SPECIALS.contains(&c))
    {
        return Err(if c == '@' {
            IdentifierProblem::MoreThanOneAt
        } else {
            IdentifierProblem::LocalPartCharacter(c)
        });
    }
    if local.len() > MAX_EMAIL_LOCAL_PART {
        return Err(IdentifierProblem::LocalPartTooLong);
    }
    Ok(local)
}

/// Converts a domain to lowercase ASCII with IDNA and checks it is a plausible mail domain.
fn normalise_domain(domain: &str) -> Result<String, IdentifierProblem> {
    if domain.is_empty() {
        return Err(IdentifierProblem::EmptyDomain);
    }
    let mut ascii = idna::domain_to_ascii(domain).map_err(|_| IdentifierProblem::InvalidDomain)?;
    // A fully qualified `example.com.` is the same domain; IDNA maps ideographic full stops to `.`
    // first, so this also drops a trailing `。`.
    if ascii.ends_with('.') {
        ascii.pop();
    }
    if ascii.is_empty() {
        return Err(IdentifierProblem::EmptyDomain);
    }
    if ascii.len() > MAX_DOMAIN {
        return Err(IdentifierProblem::InvalidDomain);
    }
    if !ascii.contains('.') {
        return if is_valid_label(&ascii) {
            Err(IdentifierProblem::DomainWithoutDot)
        } else {
            Err(IdentifierProblem::InvalidDomain)
        };
    }
    let all_valid = ascii.split('.').all(is_valid_label);
    let numeric_tld = ascii
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if !all_valid || numeric_tld {
        return Err(IdentifierProblem::InvalidDomain);
    }
    Ok(ascii)
}

/// A DNS host-name label: 1 to 63 lowercase letters, digits and hyphens, no hyphen at either end.
fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks that `region` is a default phone region the metadata knows (an ISO 3166 alpha-2 code,
/// any case), or empty for none; for validating configuration when it is loaded.
pub fn check_phone_region(region: &str) -> Result<(), IdentifierProblem> {
    parse_region(region).map(|_| ())
}

/// The region as the phone-number library's id; `None` for an empty region.
fn parse_region(region: &str) -> Result<Option<phonenumber::country::Id>, IdentifierProblem> {
    let region = region.trim();
    if region.is_empty() {
        return Ok(None);
    }
    region
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .map(Some)
        .map_err(|_| IdentifierProblem::UnknownRegion {
            region: region.to_owned(),
        })
}

/// The rest of a number written with the `00` international prefix, if it is written so.
fn strip_double_zero(number: &str) -> Option<&str> {
    number
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .strip_prefix("00")
}

/// The number without a leading `tel:` scheme.
fn strip_tel(number: &str) -> &str {
    match number.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => &number[4..],
        _ => number,
    }
}

/// Whether a number is written in international form (`+…`, `00…` or `tel:+…`).
fn is_international(number: &str) -> bool {
    let start = strip_tel(number).trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    start.starts_with('+') || start.starts_with("00")
}

/// Normalises a phone number to E.164 (`+351912345678`) with the `phonenumber` crate (Google's
/// libphonenumber metadata), accepting any usual formatting: spaces, dashes, dots, parentheses,
/// a national trunk prefix (`0…`), `tel:` URIs.
///
/// A number starting with `+` or `00` is read as international whatever `default_region` says;
/// any other number is read as a national number of `default_region` (an ISO 3166 alpha-2 code
/// such as `PT`, any case; empty for none, in which case only international numbers are accepted).
/// If reading `00…` as international gives no valid number, the number is read in the default
/// region after all, so regions whose international prefix starts with `00` but is longer
/// (Australia's `0011`) still work. The number must be valid for its country, not just plausible.
/// An extension (`… ext. 12`) is dropped: E.164 has none.
pub fn normalise_phone(raw: &str, default_region: &str) -> Result<Identifier, IdentifierProblem> {
    let normalised = e164(&parse_phone(raw, default_region)?);
    // The library can accept a number whose E.164 form it no longer accepts: letters read as
    // keypad digits (`007T40 0000 000` became `+78400000000`, itself invalid), or a region's
    // international prefix (`007831 0000000` in GB became `+78310000000`, also invalid). An
    // identifier must read back as itself in any region, so such numbers are refused.
    match phonenumber::parse(None, &normalised) {
        Ok(again) if again.is_valid() && e164(&again) == normalised => {}
        _ => return Err(IdentifierProblem::InvalidPhone),
    }
    Ok(Identifier::Phone(normalised))
}

/// A valid phone number read from `raw` (see [`normalise_phone`]).
fn parse_phone(
    raw: &str,
    default_region: &str,
) -> Result<phonenumber::PhoneNumber, IdentifierProblem> {
    let trimmed = trim_invisible(raw);
    if trimmed.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    let region = parse_region(default_region)?;
    if let Some(rest) = strip_double_zero(trimmed)
        && let Ok(number) = phonenumber::parse(None, format!("+{rest}"))
        && number.is_valid()
    {
        return Ok(number);
    }
    let international = is_international(trimmed);
    // A `+` number is read without the region: the library would otherwise strip the region's
    // national prefix from it (with US, `+43 12000` would lose its 1 and become `+43 2000`).
    let plus = international && strip_double_zero(strip_tel(trimmed)).is_none();
    let read_in = if plus { None } else { region };
    let parsed = match phonenumber::parse(read_in, trimmed) {
        Ok(number) if number.is_valid() => return Ok(number),
        _ if region.is_none() && !international => {
            return Err(IdentifierProblem::MissingCountryCode);
        }
        parsed => parsed,
    };
    // `+44 (0)20 …`: the national trunk prefix written into an international number, as much of
    // Europe does. Dropped only when the number is invalid with it, since Italian numbers keep
    // their leading 0 after the country code.
    if international
        && trimmed.contains("(0)")
        && let Ok(number) = parse_phone(&trimmed.replacen("(0)", "", 1), default_region)
    {
        return Ok(number);
    }
    match parsed {
        Err(_) => Err(IdentifierProblem::NotAPhoneNumber),
        Ok(_) if international => Err(IdentifierProblem::InvalidPhone),
        Ok(_) => Err(IdentifierProblem::InvalidPhoneForRegion {
            region: default_region.trim().to_ascii_uppercase(),
        }),
    }
}

/// The number in E.164.
fn e164(number: &phonenumber::PhoneNumber) -> String {
    number.format().mode(phonenumber::Mode::E164).to_string()
}

/// Normalises a source system's customer id: the source name and the id are trimmed and must not
/// be empty; the id must have no control or invisible characters and at most 256 bytes.
///
/// Case is kept: source ids can be case-sensitive (Salesforce's 15-character ids are), so
/// `0035g00000XyZ` and `0035g00000xyz` are different customers.
pub fn normalise_source_id(source: &str, raw_id: &str) -> Result<Identifier, IdentifierProblem> {
    let source = trim_invisible(source);
    if source.is_empty() {
        return Err(IdentifierProblem::BlankSource);
    }
    let id = trim_invisible(raw_id);
    if id.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    if let Some(c) = id
        .chars()
        .find(|&c| c.is_control() || (is_invisible(c) && c != ' '))
    {
        return Err(IdentifierProblem::SourceIdCharacter(c));
    }
    if id.len() > MAX_SOURCE_ID {
        return Err(IdentifierProblem::SourceIdTooLong);
    }
    Ok(Identifier::SourceId {
        source: source.to_owned(),
        id: id.to_owned(),
    })
}

// ------------------------------------------------------------------------------------------------
// Junk detection
//
// A junk identifier is kept on the record but links no one. Every rule here errs towards junk:
// calling a real identifier junk costs a missed link (which another identifier or a steward can
// still make), while letting junk through merges strangers.

/// Why an identifier is junk. The codes of [`JunkReason::as_str`] are reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JunkReason {
    /// Empty or only whitespace.
    Blank,
    /// A placeholder someone typed instead of a value (`unknown`, `n/a`, `test@…`, `noreply@…`).
    Placeholder,
    /// An e-mail domain reserved for examples and tests, or a placeholder word (`example.com`,
    /// `*.test`, `localhost`, `none.com`).
    PlaceholderDomain,
    /// A phone number made of one digit repeated (`000000000`, `+351 910 000 000`).
    RepeatedDigits,
    /// A phone number that is a run of digits (`123456789`, `+351 912 345 678`).
    SequentialDigits,
    /// A phone number with fewer than 6 national digits.
    TooShort,
    /// On the configured block list ([`JunkPolicy`]).
    Blocked,
}

impl JunkReason {
    /// The stable UPPER_SNAKE_CASE code reported to callers.
    pub fn as_str(self) -> &'static str {
        match self {
            JunkReason::Blank => "BLANK",
            JunkReason::Placeholder => "PLACEHOLDER",
            JunkReason::PlaceholderDomain => "PLACEHOLDER_DOMAIN",
            JunkReason::RepeatedDigits => "REPEATED_DIGITS",
            JunkReason::SequentialDigits => "SEQUENTIAL_DIGITS",
            JunkReason::TooShort => "TOO_SHORT",
            JunkReason::Blocked => "BLOCKED",
        }
    }

    /// A sentence saying why the identifier links no one.
    pub fn description(self) -> &'static str {
        match self {
            JunkReason::Blank => "the identifier is blank",
            JunkReason::Placeholder => "the identifier is a placeholder, not a real value",
            JunkReason::PlaceholderDomain => {
                "the e-mail domain is reserved for examples or tests, or is a placeholder"
            }
            JunkReason::RepeatedDigits => "the phone number is one digit repeated",
            JunkReason::SequentialDigits => "the phone number is a run of consecutive digits",
            JunkReason::TooShort => "the phone number has fewer than 6 national digits",
            JunkReason::Blocked => "the identifier is on the configured block list",
        }
    }
}

impl fmt::Display for JunkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configurable part of junk detection, on top of the built-in rules (which always apply).
/// The default blocks nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JunkPolicy {
    /// Normalised identifier values that are junk, matched exactly against
    /// [`Identifier::value`]: an e-mail as [`normalise_email`] gives it, a phone in E.164, a source
    /// id as `source:id`. Use [`JunkPolicy::block`] to add one from an identifier.
    pub blocked: BTreeSet<String>,
    /// E-mail domains in ASCII lowercase (`mailinator.com`) whose addresses are all junk,
    /// subdomains included. Use [`JunkPolicy::block_email_domain`] to add one from user input.
    pub blocked_email_domains: BTreeSet<String>,
}

impl JunkPolicy {
    /// Blocks one identifier (normalise it first).
    pub fn block(&mut self, id: &Identifier) {
        self.blocked.insert(id.value());
    }

    /// Blocks an e-mail domain and its subdomains, given in any case or script (`Bücher.de`).
    pub fn block_email_domain(&mut self, domain: &str) -> Result<(), IdentifierProblem> {
        let domain = normalise_domain(trim_invisible(domain))?;
        self.blocked_email_domains.insert(domain);
        Ok(())
    }

    /// Whether the configured lists block `id`.
    fn blocks(&self, id: &Identifier) -> bool {
        if !self.blocked.is_empty() && self.blocked.contains(&id.value()) {
            return true;
        }
        match id {
            Identifier::Email(email) if !self.blocked_email_domains.is_empty() => {
                let domain = email.rsplit_once('@').map_or("", |(_, domain)| domain);
                domain_suffixes(domain).any(|suffix| self.blocked_email_domains.contains(suffix))
            }
            _ => false,
        }
    }
}

/// A domain and every parent domain of it: `a.b.c`, `b.c`, `c`.
fn domain_suffixes(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::once(domain).chain(
        domain
            .match_indices('.')
            .map(move |(i, _)| &domain[i + 1..]),
    )
}

/// How a raw value from a record can be used as an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A well-formed identifier that may link records.
    Usable(Identifier),
    /// A value that is kept on the record but links no one; not an error.
    Junk(JunkReason),
    /// A malformed value; the caller decides whether that rejects the record.
    Invalid(IdentifierProblem),
}

impl Classified {
    /// The identifier, when usable.
    pub fn usable(&self) -> Option<&Identifier> {
        match self {
            Classified::Usable(id) => Some(id),
            Classified::Junk(_) | Classified::Invalid(_) => None,
        }
    }

    /// Classifies a normalised identifier against the junk rules.
    fn of(id: Identifier, policy: &JunkPolicy) -> Self {
        match junk_reason(&id, policy) {
            Some(reason) => Classified::Junk(reason),
            None => Classified::Usable(id),
        }
    }
}

/// Placeholder words, compared after [`placeholder_key`] (lowercase, no separators or brackets):
/// `N/A`, `n.a.`, `#N/A` and `(n/a)` are all `na`. They are junk as the whole value of any kind of
/// identifier and as an e-mail local part. They are the fill-ins found in CRM and ERP exports:
/// "no value" words, spreadsheet and programming-language nulls, keyboard mashes, "no e-mail"
/// markers, no-reply mailboxes, and the shared accounts point-of-sale systems book anonymous sales
/// to (`GUEST`, `WALK-IN`), which would otherwise make every anonymous buyer one customer.
/// Kept sorted (a test checks).
const PLACEHOLDER_WORDS: &[&str] = &[
    "anonymous",
    "asdf",
    "asdfgh",
    "blank",
    "cashcustomer",
    "declined",
    "default",
    "donotreply",
    "dontreply",
    "dummy",
    "empty",
    "example",
    "fake",
    "guest",
    "invalid",
    "missing",
    "na",
    "nan",
    "nil",
    "noaddress",
    "nobody",
    "noemail",
    "nomail",
    "none",
    "nonumber",
    "noone",
    "nophone",
    "noreply",
    "notapplicable",
    "notavailable",
    "nothing",
    "notknown",
    "notprovided",
    "null",
    "placeholder",
    "qwerty",
    "refused",
    "sample",
    "tba",
    "tbc",
    "tbd",
    "test",
    "testing",
    "undefined",
    "unk",
    "unknown",
    "void",
    "walkin",
    "walkincustomer",
    "xxx",
];

/// Domains reserved for documentation (RFC 2606); their subdomains too.
const RESERVED_DOMAINS: &[&str] = &["example.com", "example.net", "example.org"];

/// Top-level (or second-level) domains that never hold a public mailbox: reserved for examples and
/// tests (`example`, `invalid`, `test`, `localhost`: RFC 2606, RFC 6761), link-local and private
/// names (`local`: RFC 6762; `home.arpa`: RFC 8375; `internal`: ICANN, 2024) and the
/// `localdomain` that unconfigured hosts use.
const RESERVED_SUFFIXES: &[&str] = &[
    "example",
    "home.arpa",
    "internal",
    "invalid",
    "local",
    "localdomain",
    "localhost",
    "test",
];

/// The value as compared with [`PLACEHOLDER_WORDS`]: trimmed, stripped of surrounding brackets,
/// quotes, `#` and `*`, without inner spaces, dashes, underscores, dots and slashes, lowercase.
fn placeholder_key(value: &str) -> String {
    trim_invisible(value)
        .trim_matches(|c: char| {
            matches!(
                c,
                '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '"' | '\'' | '#' | '*'
            ) || is_invisible(c)
        })
        .chars()
        .filter(|&c| !matches!(c, '-' | '_' | '.' | '/' | '\\') && !is_invisible(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a whole value is a placeholder: a placeholder word, or only punctuation and symbols
/// (`-`, `?`, `...`).
fn is_placeholder_value(value: &str) -> bool {
    let trimmed = trim_invisible(value);
    if !trimmed.is_empty() && !trimmed.chars().any(char::is_alphanumeric) {
        return true;
    }
    PLACEHOLDER_WORDS
        .binary_search(&placeholder_key(trimmed).as_str())
        .is_ok()
}

/// Whether an e-mail local part is a placeholder: a placeholder value, also once a plus-tag is
/// removed (`test+1`); a placeholder word of 4 letters or more followed by digits (`test123`,
/// `unknown2`); or one character repeated at least 3 times, or `x` at least twice (`aaa`, `xx`).
fn is_placeholder_local_part(local: &str) -> bool {
    if is_placeholder_value(local) {
        return true;
    }
    let base = local.split_once('+').map_or(local, |(base, _)| base);
    if base != local && is_placeholder_value(base) {
        return true;
    }
    let key = placeholder_key(base);
    let word = key.trim_end_matches(|c: char| c.is_ascii_digit());
    if word.len() >= 4 && word.len() < key.len() && PLACEHOLDER_WORDS.binary_search(&word).is_ok() {
        return true;
    }
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => {
            let count = key.chars().count();
            chars.all(|c| c == first) && (count >= 3 || (first == 'x' && count >= 2))
        }
        None => false,
    }
}

/// Whether `domain` is `suffix` or one of its subdomains, ignoring ASCII case.
fn has_domain_suffix(domain: &str, suffix: &str) -> bool {
    let (domain, suffix) = (domain.as_bytes(), suffix.as_bytes());
    if domain.len() < suffix.len() {
        return false;
    }
    let start = domain.len() - suffix.len();
    domain[start..].eq_ignore_ascii_case(suffix) && (start == 0 || domain[start - 1] == b'.')
}

/// Whether an e-mail domain (ASCII, any case) is a placeholder: reserved for examples and tests
/// (see [`RESERVED_DOMAINS`] and [`RESERVED_SUFFIXES`]), or a two-label domain whose name is a
/// placeholder word (`test.com`, `none.com`, `noemail.com`, `example.pt`). Real mail providers are
/// never built in, even when they are often typed as fillers (`email.com`, `mail.com` and
/// `domain.com` are real providers with real customers): add those to
/// [`JunkPolicy::blocked_email_domains`] if a source abuses them, as well as disposable-mail
/// domains.
fn is_placeholder_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if RESERVED_DOMAINS
        .iter()
        .chain(RESERVED_SUFFIXES)
        .any(|suffix| has_domain_suffix(domain, suffix))
    {
        return true;
    }
    let mut labels = domain.split('.');
    match (labels.next(), labels.next(), labels.next()) {
        (Some(name), Some(_), None) | (Some(name), None, None) => is_placeholder_value(name),
        _ => false,
    }
}

/// Whether a digit string is one digit repeated.
fn is_repeated(digits: &[u8]) -> bool {
    digits.windows(2).all(|pair| pair[0] == pair[1])
}

/// Whether a digit string is a run of consecutive digits, up or down, wrapping between 9 and 0
/// (`1234567890`, `987654321`).
fn is_run(digits: &[u8]) -> bool {
    let step = |a: u8, b: u8| (10 + b - a) % 10;
    digits.len() >= 2 && {
        let first = step(digits[0], digits[1]);
        (first == 1 || first == 9)
            && digits
                .windows(2)
                .all(|pair| step(pair[0], pair[1]) == first)
    }
}

/// Least national significant digits of a usable phone number.
const MIN_NATIONAL_DIGITS: usize = 6;

/// Least digits a run or repetition must have after a mobile or area prefix to be junk.
const MIN_PATTERN_AFTER_PREFIX: usize = 7;

/// Junk patterns of a national significant number (ASCII digits): one digit repeated, a run of
/// 6 digits or more, or such a repetition or run of 7 digits or more after a prefix of 1 or 2
/// digits (a mobile or area prefix: `912 345 678` in Portugal, `0800 000 0000`), or fewer than 6
/// digits. Real numbers of these shapes exist but are rare, and are far more often typed as
/// fillers; small territories whose numbers have 4 or 5 digits (Niue, Saint Helena) are junk too.
fn national_digits_junk(digits: &[u8]) -> Option<JunkReason> {
    if !digits.is_empty() && is_repeated(digits) {
        return Some(JunkReason::RepeatedDigits);
    }
    if digits.len() >= MIN_NATIONAL_DIGITS && is_run(digits) {
        return Some(JunkReason::SequentialDigits);
    }
    for prefix in 1..=2 {
        if let Some(rest) = digits.get(prefix..)
            && rest.len() >= MIN_PATTERN_AFTER_PREFIX
        {
            if is_repeated(rest) {
                return Some(JunkReason::RepeatedDigits);
            }
            if is_run(rest) {
                return Some(JunkReason::SequentialDigits);
            }
        }
    }
    (digits.len() < MIN_NATIONAL_DIGITS).then_some(JunkReason::TooShort)
}

/// The digits after the country calling code of international digits (without `+`), if they start
/// with a known code; calling codes are prefix-free, so the first known prefix is the code.
fn after_country_code(digits: &[u8]) -> Option<&[u8]> {
    (1..=3).find_map(|len| {
        let code = digits.get(..len)?;
        let code = std::str::from_utf8(code).ok()?.parse::<u16>().ok()?;
        phonenumber::metadata::DATABASE
            .by_code(&code)
            .and_then(|_| digits.get(len..))
    })
}

/// Junk patterns of a phone number before it is parsed, so that fillers such as `000 000 000` or
/// `123456789` are reported as junk rather than as invalid numbers. Only values made of digits and
/// phone punctuation are judged; anything else (`1-800-FLOWERS`) is left to the parser.
fn raw_phone_junk(trimmed: &str) -> Option<JunkReason> {
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | '(' | ')' | '/' | ' '))
    {
        return None;
    }
    let digits: Vec<u8> = trimmed.bytes().filter(u8::is_ascii_digit).collect();
    let national = if is_international(trimmed) {
        let digits = if trimmed.contains('+') {
            &digits[..]
        } else {
            digits.get(2..).unwrap_or_default()
        };
        after_country_code(digits).unwrap_or(digits)
    } else {
        &digits[..]
    };
    national_digits_junk(national).or_else(|| {
        // Also without the national trunk prefix (`0…`), which a parsed number no longer has.
        let without_trunk = national
            .iter()
            .position(|&d| d != b'0')
            .map_or(&[][..], |i| &national[i..]);
        if without_trunk.len() == national.len() || without_trunk.len() < MIN_NATIONAL_DIGITS {
            return None;
        }
        national_digits_junk(without_trunk)
    })
}

/// Why a normalised identifier is junk, if it is: the built-in rules for its kind, then the
/// configured block lists of `policy`. Junk identifiers never link records to one customer.
///
/// Built in, for every kind: blank, or a placeholder word or only punctuation as the whole value
/// (`unknown`, `N/A`, `null`, `-`, `?`, `tbd`…, case and surrounding whitespace ignored).
/// - E-mail: a placeholder domain (reserved for examples and tests: `example.com` and its
///   subdomains, `*.example`, `*.test`, `*.invalid`, `*.localhost`, `*.local`, …; or a placeholder
///   word before a top-level domain: `test.com`, `none.com`), or a placeholder local part
///   (`test@`, `noreply@`, `do-not-reply@`, `no.email@`, `unknown+1@`, `test123@`, `xxx@`, `aaa@`).
///   Role addresses (`info@`, `sales@`) are not junk: they are real, if shared, and an address
///   shared by too many customers is stopped by resolution itself.
/// - Phone (E.164): a national significant number that is one digit repeated (`0000000`), a run
///   (`123456789`, `1234567890`, also after a 1- or 2-digit prefix: `+351 912 345 678`), or
///   shorter than 6 digits.
/// - Source id: `0` (or only zeros), `-1`, and the placeholder words. Repeated digits are not junk
///   here: `111` is a perfectly good customer number.
pub fn junk_reason(id: &Identifier, policy: &JunkPolicy) -> Option<JunkReason> {
    builtin_junk(id).or_else(|| policy.blocks(id).then_some(JunkReason::Blocked))
}

/// The built-in junk rules of [`junk_reason`].
fn builtin_junk(id: &Identifier) -> Option<JunkReason> {
    let value = match id {
        Identifier::SourceId { id, .. } => id,
        Identifier::Email(value) | Identifier::Phone(value) => value,
    };
    let value = trim_invisible(value);
    if value.is_empty() {
        return Some(JunkReason::Blank);
    }
    if is_placeholder_value(value) {
        return Some(JunkReason::Placeholder);
    }
    match id {
        Identifier::SourceId { .. } => {
            let zeros = value.bytes().all(|b| b == b'0');
            (zeros || value == "-1").then_some(JunkReason::Placeholder)
        }
        Identifier::Email(_) => {
            let (local, domain) = value.rsplit_once('@').unwrap_or((value, ""));
            if is_placeholder_domain(domain) {
                Some(JunkReason::PlaceholderDomain)
            } else if is_placeholder_local_part(local) {
                Some(JunkReason::Placeholder)
            } else {
                None
            }
        }
        Identifier::Phone(_) => {
            let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
            national_digits_junk(after_country_code(&digits).unwrap_or(&digits))
        }
    }
}

/// Classifies a raw e-mail value from a record: junk (blank, a placeholder such as `N/A`, or an
/// address [`junk_reason`] rejects), usable (normalised, see [`normalise_email`]), or invalid.
/// A malformed value is still junk rather than invalid when its local part or domain is a
/// placeholder (`unknown@`, `test@localhost`).
pub fn classify_email(raw: &str, policy: &JunkPolicy) -> Classified {
    let trimmed = trim_invisible(raw);
    if trimmed.is_empty() {
        return Classified::Junk(JunkReason::Blank);
    }
    if is_placeholder_value(trimmed) {
        return Classified::Junk(JunkReason::Placeholder);
    }
    match normalise_email(trimmed) {
        Ok(id) => Classified::of(id, policy),
        Err(problem) => match trimmed.rsplit_once('@') {
            Some((_, domain)) if is_placeholder_domain(&domain.to_lowercase()) => {
                Classified::Junk(JunkReason::PlaceholderDomain)
            }
            Some((local, _)) if is_placeholder_local_part(local) => {
                Classified::Junk(JunkReason::Placeholder)
            }
            _ => Classified::Invalid(problem),
        },
    }
}

/// Classifies a raw phone value from a record, read in `default_region` (see [`normalise_phone`]):
/// junk (blank, a placeholder such as `none`, a filler such as `000 000 000` even when it is no
/// valid number, or a number [`junk_reason`] rejects), usable (in E.164), or invalid.
pub fn classify_phone(raw: &str, default_region: &str, policy: &JunkPolicy) -> Classified {
    let trimmed = trim_invisible(raw);
    if trimmed.is_empty() {
        return Classified::Junk(JunkReason::Blank);
    }
    if is_placeholder_value(trimmed) {
        return Classified::Junk(JunkReason::Placeholder);
    }
    if let Some(reason) = raw_phone_junk(trimmed) {
        return Classified::Junk(reason);
    }
    match normalise_phone(trimmed, default_region) {
        Ok(id) => Classified::of(id, policy),
        Err(problem) => Classified::Invalid(problem),
    }
}

/// Classifies a source system's customer id from a record: junk (blank, `0`, `-1`, `unknown`,
/// `null`, `n/a`…, or blocked), usable (see [`normalise_source_id`]), or invalid (blank source
/// name, control characters, too long).
pub fn classify_source_id(source: &str, raw_id: &str, policy: &JunkPolicy) -> Classified {
    if trim_invisible(source).is_empty() {
        return Classified::Invalid(IdentifierProblem::BlankSource);
    }
    if trim_invisible(raw_id).is_empty() {
        return Classified::Junk(JunkReason::Blank);
    }
    match normalise_source_id(source, raw_id) {
        Ok(id) => Classified::of(id, policy),
        Err(problem) => Classified::Invalid(problem),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn email(value: &str) -> Identifier {
        Identifier::Email(value.to_owned())
    }

    fn phone(value: &str) -> Identifier {
        Identifier::Phone(value.to_owned())
    }

    fn none() -> JunkPolicy {
        JunkPolicy::default()
    }

    #[test]
    fn stored_identifiers_read_back_as_written() {
        for id in [
            email("ana@mail.pt"),
            phone("+351912345678"),
            Identifier::SourceId {
                source: "sap-erp".into(),
                id: "C:17".into(),
            },
        ] {
            assert_eq!(
                Identifier::from_stored(id.kind().as_str(), &id.value()),
                Some(id)
            );
        }
        assert_eq!(Identifier::from_stored("source_id", "no-source"), None);
        assert_eq!(Identifier::from_stored("fax", "+351"), None);
    }

    #[test]
    fn placeholder_words_are_sorted_and_normalised() {
        assert!(PLACEHOLDER_WORDS.windows(2).all(|w| w[0] < w[1]));
        for word in PLACEHOLDER_WORDS {
            assert_eq!(placeholder_key(word), *word);
        }
    }

    #[test]
    fn emails_normalise() {
        let cases = [
            ("john.doe@gmail.com", "john.doe@gmail.com"),
            ("  John.Doe@Gmail.COM \t", "john.doe@gmail.com"),
            ("\u{feff}MARIA.SILVA@SAPO.PT\r\n", "maria.silva@sapo.pt"),
            (
                "jane+newsletter@fastmail.com",
                "jane+newsletter@fastmail.com",
            ),
            ("j.a.n.e@gmail.com", "j.a.n.e@gmail.com"),
            ("user@bücher.de", "user@xn--bcher-kva.de"),
            ("user@BÜCHER.DE", "user@xn--bcher-kva.de"),
            ("user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
            ("josé@correio.pt", "josé@correio.pt"),
            ("JOSÉ@Correio.PT", "josé@correio.pt"),
            // A decomposed é (e + U+0301) is the same address as a composed one.
            ("jose\u{301}@correio.pt", "josé@correio.pt"),
            ("nguyễn.văn.an@gmail.com", "nguyễn.văn.an@gmail.com"),
            ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
            (
                "anna@mail.example-shop.co.uk.",
                "anna@mail.example-shop.co.uk",
            ),
            ("anna@gmail。com", "anna@gmail.com"),
            ("o'brien@eircom.net", "o'brien@eircom.net"),
            ("first_last-1990@t-online.de", "first_last-1990@t-online.de"),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise_email(raw), Ok(email(expected)), "{raw:?}");
        }
    }

    #[test]
    fn malformed_emails_are_refused_with_a_reason() {
        use IdentifierProblem::*;
        let long_local = format!("{}@gmail.com", "a".repeat(65));
        let long_email = format!(
            "{}@{}.com",
            "a".repeat(64),
            "b".repeat(63) + ".c".repeat(90).as_str()
        );
        let cases: [(&str, IdentifierProblem); 18] = [
            ("", Empty),
            ("   ", Empty),
            ("john.doe.gmail.com", MissingAt),
            ("@gmail.com", EmptyLocalPart),
            ("john@", EmptyDomain),
            ("john doe@gmail.com", LocalPartCharacter(' ')),
            ("john\u{200b}doe@gmail.com", LocalPartCharacter('\u{200b}')),
            ("John <john@gmail.com>", LocalPartCharacter(' ')),
            ("<john@gmail.com>", LocalPartCharacter('<')),
            ("mailto:john@gmail.com", LocalPartCharacter(':')),
            // The Greek question mark is canonically `;`.
            ("john\u{37e}doe@gmail.com", LocalPartCharacter(';')),
            ("a@gmail.com;b@gmail.com", MoreThanOneAt),
            ("john@gmail", DomainWithoutDot),
            ("john@gmail..com", InvalidDomain),
            ("john@-gmail.com", InvalidDomain),
            ("john@gm_ail.com", InvalidDomain),
            ("john@[192.168.0.1]", InvalidDomain),
            ("john@192.168.0.1", InvalidDomain),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise_email(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(normalise_email(&long_local), Err(LocalPartTooLong));
        assert!(normalise_email(&long_email).is_err());
        // 64 bytes is the limit, in bytes: 32 two-byte letters fit, 33 do not.
        assert!(normalise_email(&format!("{}@gmail.com", "é".repeat(32))).is_ok());
        assert_eq!(
            normalise_email(&format!("{}@gmail.com", "é".repeat(33))),
            Err(LocalPartTooLong)
        );
        assert_eq!(
            normalise_email(&format!(
                "{}@{}.pt",
                "a".repeat(64),
                vec!["b".repeat(50); 4].join(".")
            )),
            Err(EmailTooLong)
        );
    }

    #[test]
    fn problems_describe_themselves_without_the_value() {
        assert_eq!(
            IdentifierProblem::MissingAt.description(),
            "not an e-mail address: missing @"
        );
        assert_eq!(
            IdentifierProblem::InvalidPhoneForRegion {
                region: "PT".into()
            }
            .description(),
            "not a valid phone number for region PT"
        );
        assert_eq!(
            IdentifierProblem::LocalPartCharacter('\u{200b}').description(),
            "not an e-mail address: the part before the @ contains the invisible character U+200B"
        );
        assert_eq!(
            IdentifierProblem::LocalPartCharacter('<').description(),
            "not an e-mail address: the part before the @ contains '<'"
        );
    }

    #[test]
    fn phones_normalise_to_e164() {
        let cases = [
            // Portugal: mobile and Lisbon fixed line, national and international forms.
            ("916 482 739", "PT", "+351916482739"),
            ("916-482-739", "PT", "+351916482739"),
            ("+351 916 482 739", "PT", "+351916482739"),
            ("+351 916 482 739", "", "+351916482739"),
            ("00351 916 482 739", "PT", "+351916482739"),
            ("00351916482739", "US", "+351916482739"),
            ("(+351) 21 384 2710", "DE", "+351213842710"),
            ("213842710", "pt", "+351213842710"),
            // Germany: trunk prefix 0, the (0) of international forms, slashes.
            ("0151 4728 3916", "DE", "+4915147283916"),
            ("+49 (0)151 4728 3916", "PT", "+4915147283916"),
            ("030 / 901820", "DE", "+4930901820"),
            ("0049 30 901820", "US", "+4930901820"),
            // United States.
            ("(212) 736-5000", "US", "+12127365000"),
            ("212.736.5000", "US", "+12127365000"),
            ("+1 212-736-5000", "PT", "+12127365000"),
            ("1-212-736-5000", "US", "+12127365000"),
            ("tel:+1-212-736-5000", "", "+12127365000"),
            ("(212) 736-5000 ext. 12", "US", "+12127365000"),
            // United Kingdom.
            ("020 7219 3000", "GB", "+442072193000"),
            ("07911 123456", "GB", "+447911123456"),
            ("+44 (0) 7911 123456", "", "+447911123456"),
            ("0044 7911 123456", "PT", "+447911123456"),
            // Vietnam.
            ("0903 764 821", "VN", "+84903764821"),
            ("+84 903 764 821", "", "+84903764821"),
            ("024 3825 7942", "VN", "+842438257942"),
            // Australia dials abroad with 0011.
            ("0011 351 916 482 739", "AU", "+351916482739"),
        ];
        for (raw, region, expected) in cases {
            assert_eq!(
                normalise_phone(raw, region),
                Ok(phone(expected)),
                "{raw:?} in {region}"
            );
        }
    }

    #[test]
    fn malformed_phones_are_refused_with_a_reason() {
        use IdentifierProblem::*;
        let cases = [
            ("", "PT", Empty),
            ("916 482 739", "", MissingCountryCode),
            (
                "916 482 739",
                "ZZ",
                UnknownRegion {
                    region: "ZZ".into(),
                },
            ),
            (
                "816 482 739",
                "PT",
                InvalidPhoneForRegion {
                    region: "PT".into(),
                },
            ),
            // A Portuguese mobile is no German number.
            (
                "916 482 739",
                "us",
                InvalidPhoneForRegion {
                    region: "US".into(),
                },
            ),
            ("+351 816 482 739", "PT", InvalidPhone),
            ("call me", "PT", NotAPhoneNumber),
        ];
        for (raw, region, expected) in cases {
            assert_eq!(
                normalise_phone(raw, region),
                Err(expected),
                "{raw:?} in {region}"
            );
        }
        assert!(check_phone_region("pt").is_ok());
        assert!(check_phone_region("").is_ok());
        assert!(check_phone_region("Portugal").is_err());
    }

    #[test]
    fn source_ids_keep_their_case() {
        assert_eq!(
            normalise_source_id(" salesforce-eu ", " 0035g00000XyZ "),
            Ok(Identifier::SourceId {
                source: "salesforce-eu".into(),
                id: "0035g00000XyZ".into()
            })
        );
        assert_ne!(
            normalise_source_id("sf", "0035g00000XyZ"),
            normalise_source_id("sf", "0035g00000xyz")
        );
        assert_eq!(
            normalise_source_id(" ", "1"),
            Err(IdentifierProblem::BlankSource)
        );
        assert_eq!(
            normalise_source_id("sap", "12\u{0}34"),
            Err(IdentifierProblem::SourceIdCharacter('\u{0}'))
        );
        assert_eq!(
            normalise_source_id("sap", &"9".repeat(257)),
            Err(IdentifierProblem::SourceIdTooLong)
        );
        assert!(normalise_source_id("sap", "ACME 001").is_ok());
    }

    #[test]
    fn junk_emails() {
        use JunkReason::*;
        let cases = [
            ("", Blank),
            ("  \t ", Blank),
            ("N/A", Placeholder),
            ("n.a.", Placeholder),
            ("#N/A", Placeholder),
            ("unknown", Placeholder),
            ("(none)", Placeholder),
            ("NULL", Placeholder),
            ("-", Placeholder),
            ("?", Placeholder),
            ("no email", Placeholder),
            ("noemail", Placeholder),
            ("test@example.com", PlaceholderDomain),
            ("Test@Example.com", PlaceholderDomain),
            ("maria.silva@example.org", PlaceholderDomain),
            ("john@mail.example.net", PlaceholderDomain),
            ("john@shop.example", PlaceholderDomain),
            ("john@acme.test", PlaceholderDomain),
            ("john@foo.invalid", PlaceholderDomain),
            ("john@printer.local", PlaceholderDomain),
            ("john@test.com", PlaceholderDomain),
            ("john@noemail.com", PlaceholderDomain),
            ("john@example.pt", PlaceholderDomain),
            ("root@localhost", PlaceholderDomain),
            ("test@localhost", PlaceholderDomain),
            ("anna@test", PlaceholderDomain),
            ("unknown@gmail.com", Placeholder),
            ("test@gmail.com", Placeholder),
            ("test123@gmail.com", Placeholder),
            ("test+1@gmail.com", Placeholder),
            ("noreply@acme.pt", Placeholder),
            ("no-reply@acme.pt", Placeholder),
            ("do-not-reply@acme.pt", Placeholder),
            ("DoNotReply@acme.pt", Placeholder),
            ("no.email@acme.pt", Placeholder),
            ("no_email@acme.pt", Placeholder),
            ("nomail@acme.pt", Placeholder),
            ("n/a@acme.pt", Placeholder),
            ("asdf@gmail.com", Placeholder),
            ("xxx@gmail.com", Placeholder),
            ("xx@gmail.com", Placeholder),
            ("aaaa@gmail.com", Placeholder),
            ("guest@shop.pt", Placeholder),
            ("unknown@", Placeholder),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                classify_email(raw, &none()),
                Classified::Junk(expected),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn real_emails_are_usable() {
        let cases = [
            ("john.doe@gmail.com", "john.doe@gmail.com"),
            ("Info@Acme.PT", "info@acme.pt"),
            ("jo@email.com", "jo@email.com"),
            ("na.kim@naver.com", "na.kim@naver.com"),
            ("testa.maria@libero.it", "testa.maria@libero.it"),
            ("x@company.com", "x@company.com"),
            ("ana@na.acme.com", "ana@na.acme.com"),
            ("latest@news.pt", "latest@news.pt"),
            ("user@bücher.de", "user@xn--bcher-kva.de"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                classify_email(raw, &none()),
                Classified::Usable(email(expected)),
                "{raw:?}"
            );
        }
        assert_eq!(
            classify_email("john.doe@gmail", &none()),
            Classified::Invalid(IdentifierProblem::DomainWithoutDot)
        );
        assert_eq!(
            classify_email("john.doe", &none()),
            Classified::Invalid(IdentifierProblem::MissingAt)
        );
    }

    #[test]
    fn junk_phones() {
        use JunkReason::*;
        let cases = [
            ("", "PT", Blank),
            ("N/A", "PT", Placeholder),
            ("none", "PT", Placeholder),
            ("-", "PT", Placeholder),
            ("000 000 000", "PT", RepeatedDigits),
            ("0000000", "PT", RepeatedDigits),
            ("999999999", "PT", RepeatedDigits),
            ("+351 000 000 000", "PT", RepeatedDigits),
            ("00351 999 999 999", "US", RepeatedDigits),
            ("(111) 111-1111", "US", RepeatedDigits),
            ("+1 800 000 0000", "US", RepeatedDigits),
            ("910 000 000", "PT", RepeatedDigits),
            ("0800 000 0000", "GB", RepeatedDigits),
            ("123456789", "PT", SequentialDigits),
            ("1234567890", "US", SequentialDigits),
            ("0123456789", "DE", SequentialDigits),
            ("987654321", "PT", SequentialDigits),
            ("912 345 678", "PT", SequentialDigits),
            ("+351 912 345 678", "", SequentialDigits),
            ("07123 456789", "GB", SequentialDigits),
            ("0151 23456789", "DE", SequentialDigits),
            ("12345", "PT", TooShort),
            ("112", "PT", TooShort),
            ("+351", "PT", TooShort),
            ("+351 21 12", "PT", TooShort),
        ];
        for (raw, region, expected) in cases {
            assert_eq!(
                classify_phone(raw, region, &none()),
                Classified::Junk(expected),
                "{raw:?} in {region}"
            );
        }
        // Junk once normalised too (the same rules on the E.164 form).
        assert_eq!(
            junk_reason(&phone("+351912345678"), &none()),
            Some(SequentialDigits)
        );
        assert_eq!(
            junk_reason(&phone("+12000000000"), &none()),
            Some(RepeatedDigits)
        );
        assert_eq!(junk_reason(&phone("+6834002"), &none()), Some(TooShort));
        assert_eq!(junk_reason(&phone(""), &none()), Some(Blank));
        assert_eq!(junk_reason(&phone("+351916482739"), &none()), None);
    }

    #[test]
    fn real_phones_are_usable_and_bad_ones_invalid() {
        assert_eq!(
            classify_phone("  916 482 739 ", "PT", &none()),
            Classified::Usable(phone("+351916482739"))
        );
        assert_eq!(
            classify_phone("+44 20 7219 3000", "", &none()),
            Classified::Usable(phone("+442072193000"))
        );
        assert_eq!(
            classify_phone("916 482 739", "US", &none()),
            Classified::Invalid(IdentifierProblem::InvalidPhoneForRegion {
                region: "US".into()
            })
        );
    }

    #[test]
    fn junk_source_ids() {
        use JunkReason::*;
        let cases = [
            ("", Blank),
            ("   ", Blank),
            ("0", Placeholder),
            ("000", Placeholder),
            ("-1", Placeholder),
            ("unknown", Placeholder),
            ("UNKNOWN", Placeholder),
            ("null", Placeholder),
            ("n/a", Placeholder),
            ("N/A", Placeholder),
            ("none", Placeholder),
            ("-", Placeholder),
            ("WALK-IN", Placeholder),
            ("guest", Placeholder),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                classify_source_id("sap-erp", raw, &none()),
                Classified::Junk(expected),
                "{raw:?}"
            );
        }
        for raw in ["111", "1", "-2", "C-000123", "0035g00000XyZ", "10"] {
            assert!(
                matches!(
                    classify_source_id("sap-erp", raw, &none()),
                    Classified::Usable(_)
                ),
                "{raw:?}"
            );
        }
        assert_eq!(
            classify_source_id("", "123", &none()),
            Classified::Invalid(IdentifierProblem::BlankSource)
        );
    }

    #[test]
    fn block_lists_add_to_the_built_in_rules() {
        let mut policy = JunkPolicy::default();
        policy.block(&email("support@acme.pt"));
        policy.block(&phone("+351213842710"));
        policy.block(&Identifier::SourceId {
            source: "stripe".into(),
            id: "cus_shared".into(),
        });
        assert_eq!(policy.block_email_domain("  MailInator.COM "), Ok(()));
        assert_eq!(policy.block_email_domain("Bücher.de"), Ok(()));
        assert!(policy.block_email_domain("not a domain").is_err());

        let blocked = JunkReason::Blocked;
        assert_eq!(
            classify_email(" Support@ACME.pt", &policy),
            Classified::Junk(blocked)
        );
        assert_eq!(
            classify_email("anyone@mailinator.com", &policy),
            Classified::Junk(blocked)
        );
        assert_eq!(
            classify_email("anyone@eu.mailinator.com", &policy),
            Classified::Junk(blocked)
        );
        assert_eq!(
            classify_email("anyone@xn--bcher-kva.de", &policy),
            Classified::Junk(blocked)
        );
        assert_eq!(
            classify_phone("21 384 27 10", "PT", &policy),
            Classified::Junk(blocked)
        );
        assert_eq!(
            classify_source_id("stripe", "cus_shared", &policy),
            Classified::Junk(blocked)
        );
        // A blocked domain does not block look-alikes, nor another source's id.
        assert!(
            classify_email("anyone@notmailinator.com", &policy)
                .usable()
                .is_some()
        );
        assert!(classify_email("sales@acme.pt", &policy).usable().is_some());
        assert!(
            classify_source_id("sap", "cus_shared", &policy)
                .usable()
                .is_some()
        );
        // The built-in rules stay whatever the policy.
        assert_eq!(
            classify_email("test@example.com", &policy),
            Classified::Junk(JunkReason::PlaceholderDomain)
        );
        // The default policy blocks nothing beyond the built-ins.
        assert!(
            classify_email("support@acme.pt", &none())
                .usable()
                .is_some()
        );
    }

    #[test]
    fn junk_reasons_have_stable_codes() {
        let reasons = [
            (JunkReason::Blank, "BLANK"),
            (JunkReason::Placeholder, "PLACEHOLDER"),
            (JunkReason::PlaceholderDomain, "PLACEHOLDER_DOMAIN"),
            (JunkReason::RepeatedDigits, "REPEATED_DIGITS"),
            (JunkReason::SequentialDigits, "SEQUENTIAL_DIGITS"),
            (JunkReason::TooShort, "TOO_SHORT"),
            (JunkReason::Blocked, "BLOCKED"),
        ];
        for (reason, code) in reasons {
            assert_eq!(reason.as_str(), code);
            assert_eq!(reason.to_string(), code);
            assert!(!reason.description().is_empty());
        }
    }

    /// Addresses shaped like real ones, some with non-ASCII local parts or IDN domains.
    fn email_strategy() -> impl Strategy<Value = String> {
        (
            prop_oneof!["[a-zA-Z0-9._%+'-]{1,20}", "[a-zA-Zàáâãçéêíóôõúüßøñ0-9.]{1,12}"],
            prop_oneof![
                "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]{1,10}){0,2}\\.[a-zA-Z]{2,6}",
                "[a-zäöüéçãñ]{1,10}\\.[a-z]{2,3}",
            ],
        )
            .prop_map(|(local, domain)| format!("{local}@{domain}"))
    }

    /// Numbers as people type them: digits with spaces, dashes, dots, parentheses, `+` or `00`.
    fn phone_strategy() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just(""),
                Just("+"),
                Just("00"),
                Just("+351 "),
                Just("+49 "),
                Just("0")
            ],
            proptest::collection::vec(("[0-9]{1,4}", prop_oneof![" ", "-", ".", ""]), 2..5),
        )
            .prop_map(|(prefix, groups)| {
                let body: String = groups
                    .into_iter()
                    .map(|(d, sep)| format!("{d}{sep}"))
                    .collect();
                format!("{prefix}{body}")
            })
    }

    fn region_strategy() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("PT"),
            Just("DE"),
            Just("US"),
            Just("GB"),
            Just("VN"),
            Just("")
        ]
    }

    /// Raw values for junk detection: placeholders, junk and real values, in any case.
    fn raw_value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(PLACEHOLDER_WORDS).prop_map(str::to_owned),
            proptest::sample::select(
                &[
                    "N/A",
                    "n.a.",
                    "#N/A",
                    "-",
                    "0",
                    "-1",
                    "000 000 000",
                    "123456789",
                    "test@example.com",
                    "No-Reply@acme.pt",
                    "john@test.com",
                    "916 482 739",
                    "+351 912 345 678",
                    "john.doe@gmail.com",
                    "C-000123",
                ][..]
            )
            .prop_map(str::to_owned),
            email_strategy(),
            phone_strategy(),
            "[a-zA-Z0-9 ./@+-]{0,16}",
        ]
    }

    fn junk_of(classified: &Classified) -> Option<JunkReason> {
        match classified {
            Classified::Junk(reason) => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn keypad_letters_that_do_not_read_back_are_refused() {
        // Found by the idempotence property: the keypad reading accepted a number whose E.164
        // form is invalid.
        assert_eq!(
            normalise_phone("007T40 0000 000 ", "PT"),
            Err(IdentifierProblem::InvalidPhone)
        );
        // Found by the idempotency property: GB's 00 prefix let the library accept a Russian
        // number whose E.164 form it then refuses.
        assert_eq!(
            normalise_phone("007831 0000000 ", "GB"),
            Err(IdentifierProblem::InvalidPhone)
        );
    }

    proptest! {
        #[test]
        fn email_normalisation_is_idempotent(
            raw in prop_oneof![
                email_strategy(),
                "\\PC{1,12}@\\PC{1,8}\\.[a-zA-Z]{2,4}",
                any::<String>(),
            ]
        ) {
            if let Ok(id) = normalise_email(&raw) {
                prop_assert_eq!(normalise_email(&id.value()), Ok(id));
            }
        }

        #[test]
        fn emails_differing_in_case_and_surrounding_space_are_one(
            raw in email_strategy(),
            upper in proptest::collection::vec(any::<bool>(), 32),
            before in "[ \t\r\n]{0,3}",
            after in "[ \t\r\n]{0,3}",
        ) {
            let recased: String = raw
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            prop_assert_eq!(
                normalise_email(&format!("{before}{recased}{after}")),
                normalise_email(&raw)
            );
        }

        #[test]
        fn phone_normalisation_is_idempotent(
            raw in prop_oneof![phone_strategy(), any::<String>()],
            region in region_strategy(),
            other in region_strategy(),
        ) {
            if let Ok(id) = normalise_phone(&raw, region) {
                prop_assert_eq!(normalise_phone(&id.value(), region), Ok(id.clone()));
                // E.164 is international: any default region reads it the same.
                prop_assert_eq!(normalise_phone(&id.value(), other), Ok(id));
            }
        }

        #[test]
        fn junk_detection_ignores_case_and_surrounding_space(
            raw in raw_value_strategy(),
            region in region_strategy(),
            before in "[ \t]{0,2}",
            after in "[ \t\r\n]{0,2}",
        ) {
            let policy = JunkPolicy::default();
            // Only case changes that lowercase back to the same value are the same value: `ß`
            // uppercases to `SS`, so `sß` and `SSS` are different local parts.
            let upper = raw.to_uppercase();
            let upper = (upper.to_lowercase() == raw.to_lowercase()).then_some(upper);
            let variants = [upper, Some(raw.to_lowercase()), Some(format!("{before}{raw}{after}"))];
            for variant in variants.into_iter().flatten() {
                prop_assert_eq!(
                    junk_of(&classify_email(&variant, &policy)),
                    junk_of(&classify_email(&raw, &policy))
                );
                prop_assert_eq!(
                    junk_of(&classify_phone(&variant, region, &policy)),
                    junk_of(&classify_phone(&raw, region, &policy))
                );
                prop_assert_eq!(
                    junk_of(&classify_source_id("sap", &variant, &policy)),
                    junk_of(&classify_source_id("sap", &raw, &policy))
                );
            }
        }

        #[test]
        fn usable_identifiers_are_not_junk(
            raw in raw_value_strategy(),
            region in region_strategy(),
        ) {
            let policy = JunkPolicy::default();
            for classified in [
                classify_email(&raw, &policy),
                classify_phone(&raw, region, &policy),
                classify_source_id("sap", &raw, &policy),
            ] {
                if let Classified::Usable(id) = classified {
                    prop_assert_eq!(junk_reason(&id, &policy), None);
                }
            }
        }

        #[test]
        fn classifying_never_panics(raw in any::<String>(), region in "[A-Za-z]{0,3}") {
            let policy = JunkPolicy::default();
            let _ = classify_email(&raw, &policy);
            let _ = classify_phone(&raw, &region, &policy);
            let _ = classify_source_id("sap", &raw, &policy);
        }
    }
}
