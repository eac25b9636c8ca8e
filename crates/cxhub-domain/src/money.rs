//! Money: an integer amount in minor units (cents, yen, fils) of an ISO-4217 currency, never a
//! float. Totals are kept per currency; amounts in different currencies are never added up.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Violations;

/// A currency money can be paid in: a known ISO-4217 alphabetic code (`EUR`, `JPY`, `BHD`) with
/// its minor-unit exponent. Fund codes (`BOV`, `USN`, `CLF`) and special codes (precious metals
/// such as `XAU`, `XDR`, the testing code `XTS`, "no currency" `XXX`) are refused: they are not
/// what a customer pays with. Superseded codes (`HRK`, `SLL`) are accepted, because historical
/// invoices and orders are legitimately in them.
///
/// Ordered, compared and serialised by its code.
#[derive(Clone, Copy)]
pub struct Currency {
    iso: iso_currency::Currency,
    exponent: u8,
}

impl Currency {
    /// Parses an ISO-4217 alphabetic code: exactly three uppercase ASCII letters, known, neither a
    /// fund nor a special code. The error is a sentence for a field violation.
    pub fn parse(code: &str) -> Result<Self, String> {
        if code.is_empty() {
            return Err("required: an ISO-4217 currency code such as `EUR`".into());
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "`{code}` is not an ISO-4217 currency code: expected three uppercase letters such as `EUR`"
            ));
        }
        if !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "`{code}` must be uppercase: ISO-4217 codes are written `{}`",
                code.to_ascii_uppercase()
            ));
        }
        let Some(iso) = iso_currency::Currency::from_code(code) else {
            return Err(format!("`{code}` is not a known ISO-4217 currency code"));
        };
        if iso.is_fund() {
            return Err(format!(
                "`{code}` ({}) is an ISO-4217 fund code, not a currency a customer pays in",
                iso.name()
            ));
        }
        if iso.is_special() {
            return Err(format!(
                "`{code}` ({}) is an ISO-4217 special code (precious metal, unit of account, testing or no currency), not a currency a customer pays in",
                iso.name()
            ));
        }
        let exponent = iso
            .exponent()
            .and_then(|e| u8::try_from(e).ok())
            .filter(|e| *e <= 18);
        match exponent {
            Some(exponent) => Ok(Self { iso, exponent }),
            None => Err(format!(
                "`{code}` ({}) has no minor unit defined by ISO-4217",
                iso.name()
            )),
        }
    }

    /// The alphabetic code, e.g. `EUR`.
    pub fn code(self) -> &'static str {
        self.iso.code()
    }

    /// The minor-unit exponent: a unit is `10^exponent` minor units (2 for EUR, 0 for JPY,
    /// 3 for BHD).
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// The English name, e.g. `Euro`.
    pub fn name(&self) -> &str {
        self.iso.name()
    }
}

impl PartialEq for Currency {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code()
    }
}

impl Eq for Currency {}

impl Hash for Currency {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Currency {
    fn cmp(&self, other: &Self) -> Ordering {
        self.code().cmp(other.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units of one currency (`1234` EUR is 12.34 €). Negative
/// amounts are allowed (credit notes, adjustments); what a sign means is the record's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in minor units of `currency`.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// The sum of two amounts of the same currency; `None` when the currencies differ or the sum
    /// does not fit in an `i64`.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money::new(
            self.amount_minor.checked_add(other.amount_minor)?,
            self.currency,
        ))
    }
}

impl fmt::Display for Money {
    /// `12.34 EUR`, `-0.05 USD`, `1500 JPY`, `1.250 BHD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(
            i128::from(self.amount_minor),
            self.currency.exponent(),
        ))?;
        write!(f, " {}", self.currency)
    }
}

fn format_minor(amount: i128, exponent: u8) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let magnitude = amount.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u128.pow(u32::from(exponent));
    let width = usize::from(exponent);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = width
    )
}

/// Checks an amount and currency code from a request. The currency is reported at
/// `{field}.currency_code` (every amount fits, so nothing is reported about it); `field` is the
/// path of the money message, e.g. `records[3].order.lines[0].unit_price`.
pub fn check_money(
    amount_minor: i64,
    currency: &str,
    field: &str,
    v: &mut Violations,
) -> Option<Money> {
    let currency = v.check(join(field, "currency_code"), Currency::parse(currency))?;
    Some(Money::new(amount_minor, currency))
}

fn join(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}

/// Running totals per currency, in `i128` minor units so that no realistic number of `i64`
/// amounts can overflow them; conversion back to [`Money`] reports an out-of-range total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoneyTotals(BTreeMap<Currency, i128>);

impl MoneyTotals {
    /// No totals yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `money` to the total of its currency.
    pub fn add(&mut self, money: Money) {
        let total = self.0.entry(money.currency).or_insert(0);
        *total = total.saturating_add(i128::from(money.amount_minor));
    }

    /// Subtracts `money` from the total of its currency (a refund from revenue, say).
    pub fn subtract(&mut self, money: Money) {
        let total = self.0.entry(money.currency).or_insert(0);
        *total = total.saturating_sub(i128::from(money.amount_minor));
    }

    /// The total of `currency` in minor units (0 when nothing was added in it).
    pub fn get(&self, currency: Currency) -> i128 {
        self.0.get(&currency).copied().unwrap_or(0)
    }

    /// Every currency seen, in code order, with its total in minor units.
    pub fn iter(&self) -> impl Iterator<Item = (Currency, i128)> + '_ {
        self.0.iter().map(|(c, t)| (*c, *t))
    }

    /// Whether no amount was added or subtracted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The total of `currency` as [`Money`], or a sentence saying it does not fit in an `i64`.
    pub fn total(&self, currency: Currency) -> Result<Money, String> {
        let total = self.get(currency);
        i64::try_from(total)
            .map(|amount| Money::new(amount, currency))
            .map_err(|_| {
                format!(
                    "the total of {} {currency} is out of range: at most {} minor units",
                    format_minor(total, currency.exponent()),
                    i64::MAX
                )
            })
    }

    /// Every total as [`Money`], in code order; a total out of range is reported at
    /// `{field}[CODE]` and left out.
    pub fn to_money(&self, field: &str, v: &mut Violations) -> Vec<Money> {
        self.0
            .keys()
            .filter_map(|c| v.check(format!("{field}[{c}]"), self.total(*c)))
            .collect()
    }
}

impl Extend<Money> for MoneyTotals {
    fn extend<I: IntoIterator<Item = Money>>(&mut self, iter: I) {
        for money in iter {
            self.add(money);
        }
    }
}

impl FromIterator<Money> for MoneyTotals {
    fn from_iter<I: IntoIterator<Item = Money>>(iter: I) -> Self {
        let mut totals = Self::new();
        totals.extend(iter);
        totals
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn known_codes_carry_their_minor_unit() {
        assert_eq!(cur("EUR").exponent(), 2);
        assert_eq!(cur("USD").exponent(), 2);
        assert_eq!(cur("JPY").exponent(), 0);
        assert_eq!(cur("BHD").exponent(), 3);
        assert_eq!(cur("KWD").exponent(), 3);
        assert_eq!(cur("EUR").code(), "EUR");
        assert_eq!(cur("EUR").name(), "Euro");
    }

    #[test]
    fn superseded_codes_are_accepted_for_historical_records() {
        assert_eq!(cur("HRK").exponent(), 2);
    }

    #[test]
    fn refuses_what_is_not_a_payable_currency() {
        for (code, says) in [
            ("", "required"),
            ("eur", "must be uppercase"),
            ("Eur", "must be uppercase"),
            ("EU", "three uppercase letters"),
            ("EURO", "three uppercase letters"),
            ("E1R", "three uppercase letters"),
            ("ÉUR", "three uppercase letters"),
            ("ABC", "not a known"),
            ("XAU", "special code"),
            ("XXX", "special code"),
            ("XTS", "special code"),
            ("XDR", "special code"),
            ("BOV", "fund code"),
            ("USN", "fund code"),
            ("CLF", "fund code"),
        ] {
            let err = Currency::parse(code).unwrap_err();
            assert!(err.contains(says), "{code}: {err}");
        }
    }

    #[test]
    fn check_money_reports_the_currency_field() {
        let mut v = Violations::new();
        let m = check_money(1234, "EUR", "order.total", &mut v);
        assert_eq!(m, Some(Money::new(1234, cur("EUR"))));
        assert_eq!(check_money(5, "eur", "lines[1].unit_price", &mut v), None);
        assert_eq!(check_money(5, "XAU", "", &mut v), None);
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            ["lines[1].unit_price.currency_code", "currency_code"]
        );
    }

    #[test]
    fn displays_in_major_units() {
        assert_eq!(Money::new(1234, cur("EUR")).to_string(), "12.34 EUR");
        assert_eq!(Money::new(-5, cur("USD")).to_string(), "-0.05 USD");
        assert_eq!(Money::new(1500, cur("JPY")).to_string(), "1500 JPY");
        assert_eq!(Money::new(1250, cur("BHD")).to_string(), "1.250 BHD");
        assert_eq!(
            Money::new(i64::MIN, cur("EUR")).to_string(),
            "-92233720368547758.08 EUR"
        );
    }

    #[test]
    fn serialises_as_the_code() {
        let json = serde_json::to_string(&Money::new(100, cur("JPY"))).unwrap();
        assert_eq!(json, r#"{"amount_minor":100,"currency":"JPY"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Money::new(100, cur("JPY")));
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"XXX"}"#).is_err());
    }

    #[test]
    fn adds_only_within_a_currency() {
        let eur = Money::new(100, cur("EUR"));
        assert_eq!(
            eur.checked_add(Money::new(50, cur("EUR"))),
            Some(Money::new(150, cur("EUR")))
        );
        assert_eq!(eur.checked_add(Money::new(50, cur("USD"))), None);
        assert_eq!(Money::new(i64::MAX, cur("EUR")).checked_add(eur), None);
    }

    #[test]
    fn totals_are_kept_per_currency_and_overflow_is_reported() {
        let mut totals: MoneyTotals = [
            Money::new(100, cur("EUR")),
            Money::new(7, cur("JPY")),
            Money::new(250, cur("EUR")),
        ]
        .into_iter()
        .collect();
        totals.subtract(Money::new(50, cur("EUR")));
        assert_eq!(totals.get(cur("EUR")), 300);
        assert_eq!(totals.get(cur("JPY")), 7);
        assert_eq!(totals.get(cur("USD")), 0);
        let codes: Vec<_> = totals.iter().map(|(c, _)| c.code()).collect();
        assert_eq!(codes, ["EUR", "JPY"]);

        totals.add(Money::new(i64::MAX, cur("JPY")));
        let mut v = Violations::new();
        let money = totals.to_money("totals", &mut v);
        assert_eq!(money, [Money::new(300, cur("EUR"))]);
        let violations = v.into_vec();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "totals[JPY]");
        assert!(violations[0].description.contains("out of range"));
    }

    proptest! {
        #[test]
        fn totals_equal_the_exact_sum_whatever_the_order(
            amounts in proptest::collection::vec((any::<i64>(), 0usize..3), 0..40),
        ) {
            let codes = ["EUR", "JPY", "BHD"];
            let money: Vec<Money> =
                amounts.iter().map(|(a, c)| Money::new(*a, cur(codes[*c]))).collect();
            let forward: MoneyTotals = money.iter().copied().collect();
            let backward: MoneyTotals = money.iter().rev().copied().collect();
            prop_assert_eq!(&forward, &backward);
            for (i, code) in codes.iter().enumerate() {
                let exact: i128 =
                    amounts.iter().filter(|(_, c)| *c == i).map(|(a, _)| i128::from(*a)).sum();
                prop_assert_eq!(forward.get(cur(code)), exact);
            }
        }
    }
}
