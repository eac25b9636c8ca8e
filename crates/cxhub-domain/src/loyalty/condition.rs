//! The condition language of loyalty rules: a small, safe expression language over the facts the
//! hub knows about a customer (scores, CLV, RFM segment, consents, attributes, the triggering
//! event). The reference for users is `docs/rule-conditions.md`.
//!
//! ```text
//! churn.band == "high" && clv.value >= 200 && consent("marketing", "email")
//! ```
//!
//! Safety by construction: there are no loops, no user-defined functions, no regular expressions,
//! no arithmetic and no access to anything but the [`Facts`] the caller hands in. A source is at most
//! [`MAX_SOURCE_BYTES`] long, nests at most [`MAX_DEPTH`] levels and holds lists of at most
//! [`MAX_LIST_ITEMS`] items, so compiling and evaluating are linear in the size of the source.
//!
//! [`compile`] parses with a hand-written recursive-descent parser and type-checks every clause
//! against a [`FactSchema`]; [`Condition::evaluate`] says whether a customer matches and why (a
//! trace of every clause with the values it saw), [`Condition::matches`] only whether.
//!
//! A fact that is missing (or holds a value of another type, or a NaN) makes every comparison that
//! reads it false, `!=` and `not in` included; `has(fact)` tests presence.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldViolation};

/// The longest condition accepted, in bytes of UTF-8.
pub const MAX_SOURCE_BYTES: usize = 4096;
/// The deepest nesting accepted: each `(` and each `!`/`not` opens a level (`!(` counts once).
pub const MAX_DEPTH: usize = 32;
/// The most items a list literal may hold.
pub const MAX_LIST_ITEMS: usize = 256;

/// Words that cannot name a fact (on their own; `attributes.in` is a fine fact name).
const RESERVED: [&str; 8] = ["and", "or", "not", "in", "true", "false", "has", "consent"];

// ---------------------------------------------------------------------------------------------
// Schema and facts
// ---------------------------------------------------------------------------------------------

/// The type of a fact, as declared in a [`FactSchema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FactType {
    /// A number (`f64`), e.g. `clv.value`.
    Number,
    /// A text, e.g. `rfm.segment`.
    Text,
    /// A boolean, e.g. `event.company_at_fault`.
    Bool,
    /// A list of texts, e.g. `tags`.
    TextList,
}

impl FactType {
    fn ty(self) -> Ty {
        match self {
            FactType::Number => Ty::Number,
            FactType::Text => Ty::Text,
            FactType::Bool => Ty::Bool,
            FactType::TextList => Ty::List(Elem::Text),
        }
    }
}

/// Which facts a condition may read and their types. Reading a fact the schema does not know is a
/// compile error, and so is using a fact with the wrong type.
#[derive(Debug, Clone, Default)]
pub struct FactSchema {
    facts: BTreeMap<String, FactType>,
    prefixes: BTreeMap<String, FactType>,
    open: bool,
}

impl FactSchema {
    /// A schema that knows no fact yet; add them with [`FactSchema::fact`] and [`FactSchema::prefix`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A schema that accepts every fact name, with types checked only at evaluation (a value of
    /// the wrong type then counts as missing). Meant for tests and tools, not for stored rules.
    pub fn open() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    /// The customer facts the loyalty service provides (see `docs/rule-conditions.md`):
    /// scores, CLV, RFM, NPS, recency, tags, the triggering event and `attributes.<name>` (text).
    pub fn customer() -> Self {
        Self::new()
            .fact("category", FactType::Text)
            .fact("churn.band", FactType::Text)
            .fact("churn.probability", FactType::Number)
            .fact("clv.value", FactType::Number)
            .fact("rfm.segment", FactType::Text)
            .fact("nps.latest", FactType::Number)
            .fact("csat.latest", FactType::Number)
            .fact("days_since_last_purchase", FactType::Number)
            .fact("tags", FactType::TextList)
            .fact("event.type", FactType::Text)
            .fact("event.delay_days", FactType::Number)
            .fact("event.company_at_fault", FactType::Bool)
            .fact("event.case_resolved", FactType::Bool)
            .prefix("attributes", FactType::Text)
    }

    /// Declares the fact `name` with type `ty`.
    pub fn fact(mut self, name: impl Into<String>, ty: FactType) -> Self {
        self.facts.insert(name.into(), ty);
        self
    }

    /// Declares every fact `<prefix>.<rest>` (for any non-empty `rest`) with type `ty`, e.g.
    /// `prefix("attributes", FactType::Text)` for the customer's free-form attributes.
    pub fn prefix(mut self, prefix: impl Into<String>, ty: FactType) -> Self {
        self.prefixes.insert(prefix.into(), ty);
        self
    }

    /// The declared type of `name`; `None` when the schema does not know it or is open.
    pub fn fact_type(&self, name: &str) -> Option<FactType> {
        if let Some(ty) = self.facts.get(name) {
            return Some(*ty);
        }
        self.prefixes.iter().find_map(|(prefix, ty)| {
            name.strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .filter(|rest| !rest.is_empty())
                .map(|_| *ty)
        })
    }

    fn resolve(&self, name: &str) -> Option<Ty> {
        match self.fact_type(name) {
            Some(ty) => Some(ty.ty()),
            None if self.open => Some(Ty::Any),
            None => None,
        }
    }

    /// The known fact name closest to `name` (a likely typo), if any is close.
    fn suggest(&self, name: &str) -> Option<&str> {
        let len = name.chars().count();
        self.facts
            .keys()
            .filter(|known| known.chars().count().abs_diff(len) <= 2)
            .map(|known| (edit_distance(name, known), known))
            .filter(|(distance, _)| *distance <= 2)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, known)| known.as_str())
    }
}

/// The value of one fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number.
    Number(f64),
    /// A text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A list of texts.
    List(Vec<String>),
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Number(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Number(f64::from(value))
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<Vec<String>> for Value {
    fn from(value: Vec<String>) -> Self {
        Value::List(value)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write_quoted(f, s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, item)?;
                }
                f.write_str("]")
            }
        }
    }
}

/// What the hub knows about one customer at evaluation time: fact values by name and the
/// consents given (purpose and channel).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    values: HashMap<String, Value>,
    consents: HashMap<String, HashSet<String>>,
}

impl Facts {
    /// No facts and no consents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fact `name` to `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// These facts with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// Records that the customer consented to `purpose` (e.g. `marketing`) over `channel`
    /// (e.g. `email`).
    pub fn grant(&mut self, purpose: impl Into<String>, channel: impl Into<String>) -> &mut Self {
        self.consents
            .entry(purpose.into())
            .or_default()
            .insert(channel.into());
        self
    }

    /// These facts with consent to `purpose` over `channel`.
    pub fn with_consent(mut self, purpose: impl Into<String>, channel: impl Into<String>) -> Self {
        self.grant(purpose, channel);
        self
    }

    /// The value of the fact `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Whether the customer consented to `purpose` over `channel`.
    pub fn has_consent(&self, purpose: &str, channel: &str) -> bool {
        self.consents
            .get(purpose)
            .is_some_and(|channels| channels.contains(channel))
    }

    /// The value of `name` as the language sees it: a NaN counts as missing.
    fn present(&self, name: &str) -> Option<&Value> {
        self.get(name)
            .filter(|value| !matches!(value, Value::Number(n) if n.is_nan()))
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------------------------

/// A compiled condition: its source and its syntax tree. Build one with [`compile`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// The syntax tree of a condition. `Or` and `And` hold two or more operands.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// True when any operand is true (`||`, `or`).
    Or(Vec<Expr>),
    /// True when every operand is true (`&&`, `and`).
    And(Vec<Expr>),
    /// True when the operand is false (`!`, `not`).
    Not(Box<Expr>),
    /// A clause: a comparison, a membership test or a boolean on its own.
    Atom(Atom),
}

/// A clause of a condition: the unit the evaluation trace reports on.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    /// `left op right`.
    Compare {
        /// The left operand.
        left: Operand,
        /// The comparison.
        op: CompareOp,
        /// The right operand.
        right: Operand,
    },
    /// `needle in list` or `needle not in list`.
    In {
        /// The value looked for.
        needle: Operand,
        /// A list literal or a list fact.
        list: Operand,
        /// `not in`.
        negated: bool,
    },
    /// A boolean operand on its own: `has(x)`, `consent(…)`, a boolean fact, `true`.
    Test(Operand),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, CompareOp::Eq | CompareOp::Ne)
    }

    fn numbers(self, a: f64, b: f64) -> bool {
        match self {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            CompareOp::Lt => a < b,
            CompareOp::Le => a <= b,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a >= b,
        }
    }
}

/// Something a clause compares: a fact, a literal or a built-in function.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// The value of a fact, by dotted name.
    Fact(String),
    /// A literal value.
    Literal(Literal),
    /// `has(fact)`: whether the fact is present.
    Has(String),
    /// `consent("purpose", "channel")`: whether the customer gave that consent.
    Consent {
        /// The purpose, e.g. `marketing`.
        purpose: String,
        /// The channel, e.g. `email`.
        channel: String,
    },
}

/// A literal value written in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A finite number.
    Number(f64),
    /// A text in double quotes.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
    /// A list of numbers or of texts (never mixed, never nested).
    List(Vec<Literal>),
}

impl Condition {
    /// The source the condition was compiled from, as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The names of the facts the condition reads (including inside `has`), so a caller can load
    /// only those.
    pub fn facts(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        self.expr.visit_atoms(&mut |atom| {
            for operand in atom.operands() {
                if let Operand::Fact(name) | Operand::Has(name) = operand {
                    names.insert(name.as_str());
                }
            }
        });
        names
    }

    /// Whether the customer described by `facts` matches (stops at the first deciding clause).
    pub fn matches(&self, facts: &Facts) -> bool {
        self.expr.matches(facts)
    }

    /// Whether the customer matches, with a trace of every clause in source order: its canonical
    /// text, whether it was true, and the values it read. Every clause is evaluated (there are no
    /// side effects, so the result equals [`Condition::matches`]).
    pub fn evaluate(&self, facts: &Facts) -> Evaluation {
        let mut trace = Vec::new();
        let matched = self.expr.traced(facts, &mut trace);
        Evaluation { matched, trace }
    }
}

/// The canonical text: one line, `&&`, `||`, `!`, parentheses only where needed. Compiling it
/// gives the same syntax tree.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl Expr {
    fn visit_atoms<'a>(&'a self, visit: &mut impl FnMut(&'a Atom)) {
        match self {
            Expr::Or(items) | Expr::And(items) => {
                for item in items {
                    item.visit_atoms(visit);
                }
            }
            Expr::Not(inner) => inner.visit_atoms(visit),
            Expr::Atom(atom) => visit(atom),
        }
    }

    fn matches(&self, facts: &Facts) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|item| item.matches(facts)),
            Expr::And(items) => items.iter().all(|item| item.matches(facts)),
            Expr::Not(inner) => !inner.matches(facts),
            Expr::Atom(atom) => atom.matches(facts),
        }
    }

    fn traced(&self, facts: &Facts, trace: &mut Vec<ClauseResult>) -> bool {
        match self {
            // No short-circuit: every clause goes into the trace.
            Expr::Or(items) => {
                let mut any = false;
                for item in items {
                    any |= item.traced(facts, trace);
                }
                any
            }
            Expr::And(items) => {
                let mut all = true;
                for item in items {
                    all &= item.traced(facts, trace);
                }
                all
            }
            Expr::Not(inner) => !inner.traced(facts, trace),
            Expr::Atom(atom) => {
                let result = atom.matches(facts);
                let values = atom
                    .operands()
                    .filter(|operand| !matches!(operand, Operand::Literal(_)))
                    .map(|operand| FactValue {
                        name: operand.to_string(),
                        value: operand.observe(facts),
                    })
                    .collect();
                trace.push(ClauseResult {
                    clause: atom.to_string(),
                    result,
                    values,
                });
                result
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => write_joined(f, items, " || ", |item| matches!(item, Expr::Or(_))),
            Expr::And(items) => write_joined(f, items, " && ", |item| {
                matches!(item, Expr::Or(_) | Expr::And(_))
            }),
            Expr::Not(inner) => match inner.as_ref() {
                Expr::Not(_) | Expr::Atom(Atom::Test(_)) => write!(f, "!{inner}"),
                _ => write!(f, "!({inner})"),
            },
            Expr::Atom(atom) => atom.fmt(f),
        }
    }
}

fn write_joined(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    separator: &str,
    needs_parens: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl Atom {
    fn operands(&self) -> impl Iterator<Item = &Operand> {
        let (first, second) = match self {
            Atom::Compare { left, right, .. } => (left, Some(right)),
            Atom::In { needle, list, .. } => (needle, Some(list)),
            Atom::Test(operand) => (operand, None),
        };
        std::iter::once(first).chain(second)
    }

    fn matches(&self, facts: &Facts) -> bool {
        match self {
            Atom::Compare { left, op, right } => match (left.value(facts), right.value(facts)) {
                (Some(Rt::Number(a)), Some(Rt::Number(b))) => op.numbers(a, b),
                (Some(Rt::Text(a)), Some(Rt::Text(b))) => match op {
                    CompareOp::Eq => a == b,
                    CompareOp::Ne => a != b,
                    _ => false,
                },
                (Some(Rt::Bool(a)), Some(Rt::Bool(b))) => match op {
                    CompareOp::Eq => a == b,
                    CompareOp::Ne => a != b,
                    _ => false,
                },
                _ => false,
            },
            Atom::In {
                needle,
                list,
                negated,
            } => {
                let found = match (needle.value(facts), list.value(facts)) {
                    (Some(Rt::Text(t)), Some(Rt::TextList(items))) => {
                        Some(items.iter().any(|item| item == t))
                    }
                    (Some(Rt::Text(t)), Some(Rt::Literals(items))) => match items.first() {
                        Some(Literal::Number(_)) => None,
                        _ => Some(
                            items
                                .iter()
                                .any(|item| matches!(item, Literal::Text(s) if s == t)),
                        ),
                    },
                    (Some(Rt::Number(n)), Some(Rt::Literals(items))) => match items.first() {
                        Some(Literal::Text(_)) => None,
                        _ => Some(
                            items
                                .iter()
                                .any(|item| matches!(item, Literal::Number(x) if *x == n)),
                        ),
                    },
                    _ => None,
                };
                found.is_some_and(|found| found != *negated)
            }
            Atom::Test(operand) => matches!(operand.value(facts), Some(Rt::Bool(true))),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Compare { left, op, right } => write!(f, "{left} {} {right}", op.symbol()),
            Atom::In {
                needle,
                list,
                negated: false,
            } => write!(f, "{needle} in {list}"),
            Atom::In {
                needle,
                list,
                negated: true,
            } => write!(f, "{needle} not in {list}"),
            Atom::Test(operand) => operand.fmt(f),
        }
    }
}

/// A value as the evaluator sees it, borrowed from the facts or the syntax tree.
enum Rt<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
    TextList(&'a [String]),
    Literals(&'a [Literal]),
}

impl Operand {
    fn value<'a>(&'a self, facts: &'a Facts) -> Option<Rt<'a>> {
        match self {
            Operand::Fact(name) => facts.present(name).map(|value| match value {
                Value::Number(n) => Rt::Number(*n),
                Value::Text(s) => Rt::Text(s),
                Value::Bool(b) => Rt::Bool(*b),
                Value::List(items) => Rt::TextList(items),
            }),
            Operand::Literal(literal) => Some(match literal {
                Literal::Number(n) => Rt::Number(*n),
                Literal::Text(s) => Rt::Text(s),
                Literal::Bool(b) => Rt::Bool(*b),
                Literal::List(items) => Rt::Literals(items),
            }),
            Operand::Has(name) => Some(Rt::Bool(facts.present(name).is_some())),
            Operand::Consent { purpose, channel } => {
                Some(Rt::Bool(facts.has_consent(purpose, channel)))
            }
        }
    }

    /// The value a trace reports for this operand.
    fn observe(&self, facts: &Facts) -> Option<Value> {
        match self {
            Operand::Fact(name) => facts.present(name).cloned(),
            Operand::Literal(_) => None,
            Operand::Has(name) => Some(Value::Bool(facts.present(name).is_some())),
            Operand::Consent { purpose, channel } => {
                Some(Value::Bool(facts.has_consent(purpose, channel)))
            }
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Fact(name) => f.write_str(name),
            Operand::Literal(literal) => literal.fmt(f),
            Operand::Has(name) => write!(f, "has({name})"),
            Operand::Consent { purpose, channel } => {
                f.write_str("consent(")?;
                write_quoted(f, purpose)?;
                f.write_str(", ")?;
                write_quoted(f, channel)?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Text(s) => write_quoted(f, s),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    item.fmt(f)?;
                }
                f.write_str("]")
            }
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

// ---------------------------------------------------------------------------------------------
// Evaluation results
// ---------------------------------------------------------------------------------------------

/// The outcome of [`Condition::evaluate`]: whether the customer matched, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Whether the whole condition is true.
    pub matched: bool,
    /// Every clause in source order, with its result and the values it read.
    pub trace: Vec<ClauseResult>,
}

impl Evaluation {
    /// A one-line explanation for an action's reason or a dry run, e.g.
    /// `churn.band == "high" [churn.band = "high"]: true; clv.value >= 200 [clv.value = 150]: false`.
    pub fn explain(&self) -> String {
        self.trace
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The result of one clause of a condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClauseResult {
    /// The clause in canonical form, e.g. `clv.value >= 200`.
    pub clause: String,
    /// Whether the clause was true (before any enclosing `!`).
    pub result: bool,
    /// The facts and functions the clause read, with the values they had.
    pub values: Vec<FactValue>,
}

impl fmt::Display for ClauseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.clause)?;
        if !self.values.is_empty() {
            f.write_str(" [")?;
            for (i, value) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                match &value.value {
                    Some(v) => write!(f, "{} = {v}", value.name)?,
                    None => write!(f, "{} missing", value.name)?,
                }
            }
            f.write_str("]")?;
        }
        write!(f, ": {}", self.result)
    }
}

/// A fact (or `has(…)`, `consent(…)`) and the value a clause saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactValue {
    /// The fact name, or the function call in canonical form.
    pub name: String,
    /// The value; `None` when the fact was missing (or a NaN).
    pub value: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a condition does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ConditionError {
    /// Byte offset in the source.
    pub position: usize,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// What is wrong, in a sentence a rule author can act on.
    pub message: String,
}

impl ConditionError {
    fn at(source: &str, position: usize, message: String) -> Self {
        let (line, column) = line_column(source, position);
        Self {
            position,
            line,
            column,
            message,
        }
    }

    /// This error as a violation of the request field `field` (e.g. `rule.condition`); the
    /// description starts with `line:column`.
    pub fn violation(&self, field: &str) -> FieldViolation {
        FieldViolation {
            field: field.to_owned(),
            description: self.to_string(),
        }
    }

    /// This error as an [`Error::InvalidArgument`] on the field `field`.
    pub fn into_error(self, field: &str) -> Error {
        Error::invalid(vec![self.violation(field)])
    }
}

/// Every error of [`compile_all`] as one [`Error::InvalidArgument`] on the field `field`.
pub fn errors_to_error(errors: &[ConditionError], field: &str) -> Error {
    Error::invalid(errors.iter().map(|e| e.violation(field)).collect())
}

fn line_column(source: &str, position: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in source.char_indices() {
        if i >= position {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let cost = diagonal + usize::from(ca != *cb);
            let best = cost
                .min(above.saturating_add(1))
                .min(left.saturating_add(1));
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------------------

/// Compiles `source` against `schema`; on failure returns the first error (by position). Use
/// [`compile_all`] to get every error.
pub fn compile(source: &str, schema: &FactSchema) -> Result<Condition, ConditionError> {
    compile_all(source, schema).map_err(|errors| {
        errors
            .into_iter()
            .next()
            .unwrap_or_else(|| ConditionError::at(source, 0, "the condition is invalid".to_owned()))
    })
}

/// Compiles `source` against `schema`; on failure returns every unknown-fact and type error, and
/// the first syntax error (parsing stops there), sorted by position. Never empty on failure.
pub fn compile_all(source: &str, schema: &FactSchema) -> Result<Condition, Vec<ConditionError>> {
    let fail =
        |position: usize, message: String| vec![ConditionError::at(source, position, message)];
    if source.len() > MAX_SOURCE_BYTES {
        return Err(fail(
            MAX_SOURCE_BYTES,
            format!(
                "the condition is {} bytes long; at most {MAX_SOURCE_BYTES} are allowed",
                source.len()
            ),
        ));
    }
    if source.trim().is_empty() {
        return Err(fail(0, "the condition is empty".to_owned()));
    }
    let tokens = lex(source).map_err(|e| fail(e.position, e.message))?;
    let mut parser = Parser {
        source,
        tokens,
        at: 0,
        depth: 0,
        schema,
        errors: Vec::new(),
    };
    let parsed = parser.condition();
    let mut errors = parser.errors;
    match parsed {
        Ok(expr) if errors.is_empty() => Ok(Condition {
            source: source.to_owned(),
            expr,
        }),
        outcome => {
            if let Err(syntax) = outcome {
                errors.push(syntax);
            }
            errors.sort_by_key(|e| e.position);
            Err(errors
                .into_iter()
                .map(|e| ConditionError::at(source, e.position, e.message))
                .collect())
        }
    }
}

/// An error before line and column are known.
#[derive(Debug)]
struct Located {
    position: usize,
    message: String,
}

fn located(position: usize, message: impl Into<String>) -> Located {
    Located {
        position,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Cmp(CompareOp),
    AndAnd,
    OrOr,
    Bang,
    And,
    Or,
    Not,
    In,
    True,
    False,
    Number(f64),
    Str(String),
    Ident(String),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Cmp(op) => write!(f, "`{}`", op.symbol()),
            Tok::AndAnd => f.write_str("`&&`"),
            Tok::OrOr => f.write_str("`||`"),
            Tok::Bang => f.write_str("`!`"),
            Tok::And => f.write_str("`and`"),
            Tok::Or => f.write_str("`or`"),
            Tok::Not => f.write_str("`not`"),
            Tok::In => f.write_str("`in`"),
            Tok::True => f.write_str("`true`"),
            Tok::False => f.write_str("`false`"),
            Tok::Number(n) => write!(f, "the number `{n}`"),
            Tok::Str(_) => f.write_str("a text"),
            Tok::Ident(name) => write!(f, "`{name}`"),
            Tok::Eof => f.write_str("the end of the condition"),
        }
    }
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    position: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn lex(source: &str) -> Result<Vec<Token>, Located> {
    let bytes = source.as_bytes();
    let byte = |i: usize| bytes.get(i).copied();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(b) = byte(i) {
        let start = i;
        let two = |second: u8, both: Tok, one: Tok| {
            if byte(start + 1) == Some(second) {
                (both, 2)
            } else {
                (one, 1)
            }
        };
        let (tok, len) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'!' => two(b'=', Tok::Cmp(CompareOp::Ne), Tok::Bang),
            b'<' => two(b'=', Tok::Cmp(CompareOp::Le), Tok::Cmp(CompareOp::Lt)),
            b'>' => two(b'=', Tok::Cmp(CompareOp::Ge), Tok::Cmp(CompareOp::Gt)),
            b'=' if byte(i + 1) == Some(b'=') => (Tok::Cmp(CompareOp::Eq), 2),
            b'=' => return Err(located(start, "a single `=`: write `==` to compare")),
            b'&' if byte(i + 1) == Some(b'&') => (Tok::AndAnd, 2),
            b'&' => return Err(located(start, "a single `&`: write `&&` (or `and`)")),
            b'|' if byte(i + 1) == Some(b'|') => (Tok::OrOr, 2),
            b'|' => return Err(located(start, "a single `|`: write `||` (or `or`)")),
            b'"' => lex_text(source, start)?,
            b'\'' => {
                return Err(located(
                    start,
                    "texts are written in double quotes, e.g. \"negative\"",
                ));
            }
            b'-' | b'0'..=b'9' => lex_number(source, start)?,
            b if is_ident_start(b) => {
                let mut end = start;
                loop {
                    while byte(end).is_some_and(is_ident_char) {
                        end += 1;
                    }
                    if byte(end) != Some(b'.') {
                        break;
                    }
                    if !byte(end + 1).is_some_and(is_ident_start) {
                        return Err(located(end, "expected a name after `.`"));
                    }
                    end += 1;
                }
                let name = source.get(start..end).unwrap_or_default();
                let tok = match name {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::In,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    _ => Tok::Ident(name.to_owned()),
                };
                (tok, end - start)
            }
            _ => {
                let c = source
                    .get(start..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or('?');
                return Err(located(start, format!("unexpected character `{c}`")));
            }
        };
        tokens.push(Token {
            tok,
            position: start,
        });
        i = start + len;
    }
    tokens.push(Token {
        tok: Tok::Eof,
        position: source.len(),
    });
    Ok(tokens)
}

/// Lexes the text literal opening at `start`; returns it and its length in bytes.
fn lex_text(source: &str, start: usize) -> Result<(Tok, usize), Located> {
    let rest = source.get(start + 1..).unwrap_or_default();
    let mut text = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(text), i + 2)),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => text.push(escaped),
                Some((_, other)) => {
                    return Err(located(
                        start + 1 + i,
                        format!("unknown escape `\\{other}`: only `\\\"` and `\\\\` are allowed"),
                    ));
                }
                None => break,
            },
            c => text.push(c),
        }
    }
    Err(located(
        start,
        "unterminated text: a `\"` opened here is never closed",
    ))
}

/// Lexes the number starting at `start`; returns it and its length in bytes.
fn lex_number(source: &str, start: usize) -> Result<(Tok, usize), Located> {
    let bytes = source.as_bytes();
    let byte = |i: usize| bytes.get(i).copied();
    let digits = |mut i: usize| {
        while byte(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        i
    };
    let mut end = start;
    if byte(end) == Some(b'-') {
        end += 1;
        if !byte(end).is_some_and(|b| b.is_ascii_digit()) {
            return Err(located(
                start,
                "`-` must be followed by a number, e.g. `-2`",
            ));
        }
    }
    end = digits(end);
    if byte(end) == Some(b'.') {
        if !byte(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            return Err(located(end, "expected digits after the decimal point"));
        }
        end = digits(end + 1);
    }
    if let Some(b) = byte(end).filter(|b| is_ident_start(*b) || *b == b'.') {
        return Err(located(
            end,
            format!(
                "unexpected `{}` after a number: units and durations such as `30d` are not \
                 supported; compare a number, e.g. `days_since_last_purchase >= 30`",
                char::from(b)
            ),
        ));
    }
    let text = source.get(start..end).unwrap_or_default();
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok((Tok::Number(n), end - start)),
        _ => Err(located(
            start,
            format!("the number `{text}` is out of range"),
        )),
    }
}

/// Static types of operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Number,
    Text,
    Bool,
    List(Elem),
    /// Unknown until evaluation (open schema, or a fact already reported as unknown).
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    Number,
    Text,
    /// An empty list literal.
    Unknown,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Number => "a number",
            Ty::Text => "a text",
            Ty::Bool => "a boolean",
            Ty::List(Elem::Number) => "a list of numbers",
            Ty::List(Elem::Text) => "a list of texts",
            Ty::List(Elem::Unknown) => "an empty list",
            Ty::Any => "a value",
        }
    }
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    schema: &'s FactSchema,
    errors: Vec<Located>,
}

/// An operand with where it starts and its static type.
struct Typed {
    position: usize,
    operand: Operand,
    ty: Ty,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        const EOF: &Tok = &Tok::Eof;
        self.tokens.get(self.at + ahead).map_or(EOF, |t| &t.tok)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .map_or(0, |t| t.position)
    }

    fn advance(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        tok
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), Located> {
        if self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            Err(located(
                self.position(),
                format!("expected {what}, found {}", self.peek()),
            ))
        }
    }

    fn enter(&mut self, position: usize) -> Result<(), Located> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(located(
                position,
                format!("the condition nests deeper than {MAX_DEPTH} levels"),
            ))
        } else {
            Ok(())
        }
    }

    fn condition(&mut self) -> Result<Expr, Located> {
        let expr = self.or()?;
        match self.peek() {
            Tok::Eof => Ok(expr),
            Tok::RParen => Err(located(self.position(), "this `)` closes nothing")),
            tok => Err(located(
                self.position(),
                format!("unexpected {tok} after a complete clause; join clauses with `&&` or `||`"),
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, Located> {
        let first = self.and()?;
        if !matches!(self.peek(), Tok::OrOr | Tok::Or) {
            return Ok(first);
        }
        let mut items = vec![first];
        while matches!(self.peek(), Tok::OrOr | Tok::Or) {
            self.advance();
            items.push(self.and()?);
        }
        Ok(Expr::Or(items))
    }

    fn and(&mut self) -> Result<Expr, Located> {
        let first = self.not()?;
        if !matches!(self.peek(), Tok::AndAnd | Tok::And) {
            return Ok(first);
        }
        let mut items = vec![first];
        while matches!(self.peek(), Tok::AndAnd | Tok::And) {
            self.advance();
            items.push(self.not()?);
        }
        Ok(Expr::And(items))
    }

    fn not(&mut self) -> Result<Expr, Located> {
        if !matches!(self.peek(), Tok::Bang | Tok::Not) {
            return self.primary();
        }
        let position = self.position();
        self.advance();
        // `!(` is one level: the parenthesis opens it.
        let counts = self.peek() != &Tok::LParen;
        if counts {
            self.enter(position)?;
        }
        let inner = self.not()?;
        if counts {
            self.depth -= 1;
        }
        Ok(Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, Located> {
        if self.peek() != &Tok::LParen {
            return self.clause().map(Expr::Atom);
        }
        let open = self.position();
        self.enter(open)?;
        self.advance();
        let inner = self.or()?;
        if self.peek() != &Tok::RParen {
            let (line, column) = line_column(self.source, open);
            return Err(located(
                self.position(),
                format!(
                    "expected `)` to close the `(` at {line}:{column}, found {}",
                    self.peek()
                ),
            ));
        }
        self.advance();
        self.depth -= 1;
        if let Tok::Cmp(_) | Tok::In = self.peek() {
            return Err(located(
                self.position(),
                "a parenthesised condition cannot be compared; compare facts or values",
            ));
        }
        Ok(inner)
    }

    fn clause(&mut self) -> Result<Atom, Located> {
        let left = self.operand()?;
        match self.peek().clone() {
            Tok::Cmp(op) => {
                let at = self.position();
                self.advance();
                let right = self.operand()?;
                self.check_compare(op, at, &left, &right);
                Ok(Atom::Compare {
                    left: left.operand,
                    op,
                    right: right.operand,
                })
            }
            Tok::In => {
                let at = self.position();
                self.advance();
                self.membership(left, at, false)
            }
            Tok::Not if self.peek_at(1) == &Tok::In => {
                let at = self.position();
                self.advance();
                self.advance();
                self.membership(left, at, true)
            }
            _ => {
                if !matches!(left.ty, Ty::Bool | Ty::Any) {
                    self.error(
                        left.position,
                        format!(
                            "`{}` is {}, not a condition; compare it, e.g. `{} == …`",
                            left.operand,
                            left.ty.describe(),
                            left.operand
                        ),
                    );
                }
                Ok(Atom::Test(left.operand))
            }
        }
    }

    fn membership(&mut self, needle: Typed, at: usize, negated: bool) -> Result<Atom, Located> {
        let list = self.operand()?;
        let keyword = if negated { "not in" } else { "in" };
        match (needle.ty, list.ty) {
            (Ty::Bool | Ty::List(_), _) => self.error(
                needle.position,
                format!(
                    "`{keyword}` looks for a text or a number, but `{}` is {}",
                    needle.operand,
                    needle.ty.describe()
                ),
            ),
            (_, Ty::Any | Ty::List(Elem::Unknown)) | (Ty::Any, Ty::List(_)) => {}
            (Ty::Number, Ty::List(Elem::Number)) | (Ty::Text, Ty::List(Elem::Text)) => {}
            (_, Ty::List(_)) => self.error(
                at,
                format!(
                    "cannot look for {} (`{}`) in {} (`{}`)",
                    needle.ty.describe(),
                    needle.operand,
                    list.ty.describe(),
                    list.operand
                ),
            ),
            (_, ty) => self.error(
                list.position,
                format!(
                    "the right side of `{keyword}` must be a list, but `{}` is {}",
                    list.operand,
                    ty.describe()
                ),
            ),
        }
        Ok(Atom::In {
            needle: needle.operand,
            list: list.operand,
            negated,
        })
    }

    fn check_compare(&mut self, op: CompareOp, at: usize, left: &Typed, right: &Typed) {
        let symbol = op.symbol();
        for side in [left, right] {
            if let Ty::List(_) = side.ty {
                self.error(
                    side.position,
                    format!(
                        "`{symbol}` compares single values, but `{}` is a list; use `in`",
                        side.operand
                    ),
                );
                return;
            }
        }
        if op.is_ordering() {
            for side in [left, right] {
                if !matches!(side.ty, Ty::Number | Ty::Any) {
                    self.error(
                        side.position,
                        format!(
                            "`{symbol}` compares numbers, but `{}` is {}",
                            side.operand,
                            side.ty.describe()
                        ),
                    );
                }
            }
        } else if left.ty != right.ty && left.ty != Ty::Any && right.ty != Ty::Any {
            self.error(
                at,
                format!(
                    "cannot compare {} (`{}`) with {} (`{}`)",
                    left.ty.describe(),
                    left.operand,
                    right.ty.describe(),
                    right.operand
                ),
            );
        }
    }

    fn error(&mut self, position: usize, message: String) {
        self.errors.push(Located { position, message });
    }

    fn operand(&mut self) -> Result<Typed, Located> {
        let position = self.position();
        let typed = |operand, ty| Typed {
            position,
            operand,
            ty,
        };
        match self.advance() {
            Tok::Number(n) => Ok(typed(Operand::Literal(Literal::Number(n)), Ty::Number)),
            Tok::Str(s) => Ok(typed(Operand::Literal(Literal::Text(s)), Ty::Text)),
            Tok::True => Ok(typed(Operand::Literal(Literal::Bool(true)), Ty::Bool)),
            Tok::False => Ok(typed(Operand::Literal(Literal::Bool(false)), Ty::Bool)),
            Tok::LBracket => {
                let (items, ty) = self.list(position)?;
                Ok(typed(Operand::Literal(Literal::List(items)), ty))
            }
            Tok::Ident(name) if name == "has" || name == "consent" => {
                self.expect(&Tok::LParen, &format!("`(` after `{name}`"))?;
                let operand = if name == "has" {
                    let at = self.position();
                    let fact = match self.advance() {
                        Tok::Ident(fact) if !RESERVED.contains(&fact.as_str()) => fact,
                        tok => {
                            return Err(located(
                                at,
                                format!("`has` takes a fact name, found {tok}"),
                            ));
                        }
                    };
                    self.fact(at, &fact);
                    Operand::Has(fact)
                } else {
                    let purpose = self.text_argument("the consent purpose, e.g. \"marketing\"")?;
                    self.expect(&Tok::Comma, "`,` between purpose and channel")?;
                    let channel = self.text_argument("the consent channel, e.g. \"email\"")?;
                    Operand::Consent { purpose, channel }
                };
                self.expect(&Tok::RParen, "`)`")?;
                Ok(typed(operand, Ty::Bool))
            }
            Tok::Ident(name) if self.peek() == &Tok::LParen => Err(located(
                position,
                format!(
                    "unknown function `{name}`: the functions are `has(fact)` and \
                     `consent(purpose, channel)`"
                ),
            )),
            Tok::Ident(name) => {
                let ty = self.fact(position, &name);
                Ok(typed(Operand::Fact(name), ty))
            }
            tok => Err(located(
                position,
                format!("expected a fact, a value, `has(…)` or `consent(…)`, found {tok}"),
            )),
        }
    }

    /// Looks `name` up in the schema; records an error when unknown.
    fn fact(&mut self, position: usize, name: &str) -> Ty {
        if let Some(ty) = self.schema.resolve(name) {
            return ty;
        }
        let message = match self.schema.suggest(name) {
            Some(close) => format!("unknown fact `{name}`; did you mean `{close}`?"),
            None => format!("unknown fact `{name}`"),
        };
        self.error(position, message);
        Ty::Any
    }

    fn text_argument(&mut self, what: &str) -> Result<String, Located> {
        let position = self.position();
        match self.advance() {
            Tok::Str(s) if !s.is_empty() => Ok(s),
            Tok::Str(_) => Err(located(position, format!("{what} must not be empty"))),
            tok => Err(located(position, format!("expected {what}, found {tok}"))),
        }
    }

    /// Parses list items after `[` (at `open`) up to and including `]`.
    fn list(&mut self, open: usize) -> Result<(Vec<Literal>, Ty), Located> {
        let mut items = Vec::new();
        let mut elem = Elem::Unknown;
        loop {
            if self.peek() == &Tok::RBracket {
                self.advance();
                break;
            }
            let position = self.position();
            let (item, item_elem) = match self.advance() {
                Tok::Number(n) => (Literal::Number(n), Elem::Number),
                Tok::Str(s) => (Literal::Text(s), Elem::Text),
                Tok::Eof => {
                    let (line, column) = line_column(self.source, open);
                    return Err(located(
                        position,
                        format!("expected `]` to close the `[` at {line}:{column}"),
                    ));
                }
                tok => {
                    return Err(located(
                        position,
                        format!("list items must be texts or numbers, found {tok}"),
                    ));
                }
            };
            if items.len() == MAX_LIST_ITEMS {
                return Err(located(
                    position,
                    format!("a list may hold at most {MAX_LIST_ITEMS} items"),
                ));
            }
            if elem == Elem::Unknown {
                elem = item_elem;
            } else if elem != item_elem {
                self.error(
                    position,
                    "a list must hold only texts or only numbers".to_owned(),
                );
            }
            items.push(item);
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                }
                Tok::RBracket => {}
                Tok::Eof => {
                    let (line, column) = line_column(self.source, open);
                    return Err(located(
                        self.position(),
                        format!("expected `]` to close the `[` at {line}:{column}"),
                    ));
                }
                tok => {
                    return Err(located(
                        self.position(),
                        format!("expected `,` or `]` in the list, found {tok}"),
                    ));
                }
            }
        }
        Ok((items, Ty::List(elem)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schema() -> FactSchema {
        FactSchema::customer()
    }

    fn ok(source: &str) -> Condition {
        match compile(source, &schema()) {
            Ok(condition) => condition,
            Err(e) => panic!("`{source}` should compile: {e}"),
        }
    }

    fn err(source: &str) -> ConditionError {
        match compile(source, &schema()) {
            Ok(condition) => panic!("`{source}` should not compile, got {condition}"),
            Err(e) => e,
        }
    }

    fn fact(name: &str) -> Operand {
        Operand::Fact(name.to_owned())
    }

    fn text(s: &str) -> Operand {
        Operand::Literal(Literal::Text(s.to_owned()))
    }

    fn num(n: f64) -> Operand {
        Operand::Literal(Literal::Number(n))
    }

    fn cmp(left: Operand, op: CompareOp, right: Operand) -> Expr {
        Expr::Atom(Atom::Compare { left, op, right })
    }

    fn test(operand: Operand) -> Expr {
        Expr::Atom(Atom::Test(operand))
    }

    // ----- parsing -----------------------------------------------------------------------

    #[test]
    fn parses_every_literal() {
        assert_eq!(
            ok("clv.value >= 0.35").expr(),
            &cmp(fact("clv.value"), CompareOp::Ge, num(0.35))
        );
        assert_eq!(
            ok("nps.latest > -2").expr(),
            &cmp(fact("nps.latest"), CompareOp::Gt, num(-2.0))
        );
        assert_eq!(
            ok(r#"attributes.note == "say \"hi\" \\ bye""#).expr(),
            &cmp(
                fact("attributes.note"),
                CompareOp::Eq,
                text(r#"say "hi" \ bye"#)
            )
        );
        assert_eq!(
            ok("event.company_at_fault == true").expr(),
            &cmp(
                fact("event.company_at_fault"),
                CompareOp::Eq,
                Operand::Literal(Literal::Bool(true))
            )
        );
        assert_eq!(
            ok("false").expr(),
            &test(Operand::Literal(Literal::Bool(false)))
        );
        assert_eq!(
            ok(r#"rfm.segment in ["At risk", "Can't lose them"]"#).expr(),
            &Expr::Atom(Atom::In {
                needle: fact("rfm.segment"),
                list: Operand::Literal(Literal::List(vec![
                    Literal::Text("At risk".into()),
                    Literal::Text("Can't lose them".into()),
                ])),
                negated: false,
            })
        );
        assert_eq!(
            ok("nps.latest not in [9, 10,]").expr(),
            &Expr::Atom(Atom::In {
                needle: fact("nps.latest"),
                list: Operand::Literal(Literal::List(vec![
                    Literal::Number(9.0),
                    Literal::Number(10.0)
                ])),
                negated: true,
            })
        );
        assert_eq!(ok("category in []").to_string(), "category in []");
    }

    #[test]
    fn parses_every_operator_and_function() {
        for (symbol, op) in [
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<", CompareOp::Lt),
            ("<=", CompareOp::Le),
            (">", CompareOp::Gt),
            (">=", CompareOp::Ge),
        ] {
            assert_eq!(
                ok(&format!("nps.latest {symbol} 6")).expr(),
                &cmp(fact("nps.latest"), op, num(6.0))
            );
        }
        assert_eq!(
            ok(r#""vip" in tags"#).expr(),
            &Expr::Atom(Atom::In {
                needle: text("vip"),
                list: fact("tags"),
                negated: false
            })
        );
        assert_eq!(
            ok(r#"consent("marketing", "email")"#).expr(),
            &test(Operand::Consent {
                purpose: "marketing".into(),
                channel: "email".into()
            })
        );
        assert_eq!(
            ok("has(nps.latest)").expr(),
            &test(Operand::Has("nps.latest".into()))
        );
        assert_eq!(
            ok("event.company_at_fault").expr(),
            &test(fact("event.company_at_fault"))
        );
        assert_eq!(
            ok("clv.value > churn.probability").expr(),
            &cmp(fact("clv.value"), CompareOp::Gt, fact("churn.probability"))
        );
        // Keyword spellings equal symbol spellings.
        assert_eq!(
            ok("not has(clv.value) and has(nps.latest) or false").expr(),
            ok("!has(clv.value) && has(nps.latest) || false").expr()
        );
        // Prefix facts and keywords after a dot.
        assert_eq!(
            ok(r#"attributes.in == "x""#).expr(),
            &cmp(fact("attributes.in"), CompareOp::Eq, text("x"))
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_applies_to_a_whole_clause() {
        let a = || cmp(fact("nps.latest"), CompareOp::Le, num(6.0));
        let b = || test(Operand::Has("clv.value".into()));
        let c = || test(fact("event.company_at_fault"));
        let src = "nps.latest <= 6 || has(clv.value) && event.company_at_fault";
        assert_eq!(
            ok(src).expr(),
            &Expr::Or(vec![a(), Expr::And(vec![b(), c()])])
        );
        let src = "(nps.latest <= 6 || has(clv.value)) && event.company_at_fault";
        assert_eq!(
            ok(src).expr(),
            &Expr::And(vec![Expr::Or(vec![a(), b()]), c()])
        );
        // `!` negates the comparison, not its left operand.
        assert_eq!(ok("!nps.latest <= 6").expr(), &Expr::Not(Box::new(a())));
        assert_eq!(ok("!nps.latest <= 6").to_string(), "!(nps.latest <= 6)");
        assert_eq!(
            ok("!has(clv.value) || nps.latest <= 6").expr(),
            &Expr::Or(vec![Expr::Not(Box::new(b())), a()])
        );
        // Chains flatten; explicit grouping survives and is printed back.
        assert_eq!(
            ok("has(clv.value) || has(nps.latest) || has(tags)").to_string(),
            "has(clv.value) || has(nps.latest) || has(tags)"
        );
        let grouped = compile("(has(a.b) || has(a.c)) || has(a.d)", &FactSchema::open());
        assert_eq!(
            grouped.map(|c| c.to_string()).ok().as_deref(),
            Some("(has(a.b) || has(a.c)) || has(a.d)")
        );
    }

    #[test]
    fn display_is_canonical() {
        let c = ok("  not  (category==\"negative\"   and nps.latest<=6)  or ( true ) ");
        assert_eq!(
            c.to_string(),
            r#"!(category == "negative" && nps.latest <= 6) || true"#
        );
        assert_eq!(
            c.source(),
            "  not  (category==\"negative\"   and nps.latest<=6)  or ( true ) "
        );
    }

    #[test]
    fn collects_the_facts_read() {
        let c = ok(r#"has(nps.latest) && clv.value > 1 && "vip" in tags && consent("a", "b")"#);
        assert_eq!(
            c.facts().into_iter().collect::<Vec<_>>(),
            vec!["clv.value", "nps.latest", "tags"]
        );
    }

    // ----- errors ------------------------------------------------------------------------

    fn assert_error(source: &str, position: usize, line: usize, column: usize, needle: &str) {
        let e = err(source);
        assert_eq!(
            (e.position, e.line, e.column),
            (position, line, column),
            "{source}: {e}"
        );
        assert!(
            e.message.contains(needle),
            "{source}: `{}` lacks `{needle}`",
            e.message
        );
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        assert_error(r#"category == "negative"#, 12, 1, 13, "unterminated text");
        assert_error(r#"category == "a\n""#, 14, 1, 15, "unknown escape");
        assert_error(
            "nps.latest <= 6 has(clv.value)",
            16,
            1,
            17,
            "after a complete clause",
        );
        assert_error("nps.latest <= 6)", 15, 1, 16, "closes nothing");
        assert_error(
            "(nps.latest <= 6",
            16,
            1,
            17,
            "expected `)` to close the `(` at 1:1",
        );
        assert_error("", 0, 1, 1, "empty");
        assert_error("  \n ", 0, 1, 1, "empty");
        assert_error("category = \"x\"", 9, 1, 10, "`==`");
        assert_error("has(a) & has(b)", 7, 1, 8, "`&&`");
        assert_error("has(a) | has(b)", 7, 1, 8, "`||`");
        assert_error("days_since_last_purchase >= 30d", 30, 1, 31, "durations");
        assert_error("clv.value > 1.", 13, 1, 14, "decimal point");
        assert_error("clv.value > - 1", 12, 1, 13, "`-`");
        assert_error("clv.value > ", 12, 1, 13, "found the end of the condition");
        assert_error("nps.latest < 6 &&", 17, 1, 18, "found the end");
        assert_error("matches(category)", 0, 1, 1, "unknown function");
        assert_error("has(1)", 4, 1, 5, "`has` takes a fact");
        assert_error(r#"consent("marketing")"#, 19, 1, 20, "`,`");
        assert_error(r#"consent("", "email")"#, 8, 1, 9, "must not be empty");
        assert_error("category in [\"a\" \"b\"]", 17, 1, 18, "`,` or `]`");
        assert_error("category in [\"a\"", 16, 1, 17, "close the `[` at 1:13");
        assert_error("category in [true]", 13, 1, 14, "texts or numbers");
        assert_error("nps.latest < 1 < 2", 15, 1, 16, "after a complete clause");
        assert_error("category == 'x'", 12, 1, 13, "double quotes");
        assert_error("(has(tags)) == true", 12, 1, 13, "parenthesised");
        assert_error("a. == 1", 1, 1, 2, "name after `.`");
        assert_error("catégorie", 3, 1, 4, "unexpected character `é`");
        assert_error("clv.value > 1e999", 13, 1, 14, "after a number");
        assert_error(
            &format!("clv.value > 1{}", "0".repeat(400)),
            12,
            1,
            13,
            "out of range",
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        // Multi-line, with a multi-byte character before the error on its line.
        let e = err("has(nps.latest)\n&& attributes.x == \"é\" && churn.bnd == 1");
        assert_eq!((e.line, e.column), (2, 27));
        assert_eq!(e.position, 16 + 27);
        assert!(e.message.contains("did you mean `churn.band`?"), "{e}");
    }

    #[test]
    fn schema_and_type_errors_are_all_reported() {
        let schema = schema();
        let errors = match compile_all(
            r#"churn.bnd == "high" && category == 5 && clv.value < "a" && nps.latest"#,
            &schema,
        ) {
            Ok(_) => panic!("should fail"),
            Err(errors) => errors,
        };
        let summary: Vec<_> = errors
            .iter()
            .map(|e| (e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "unknown fact `churn.bnd`; did you mean `churn.band`?"),
                (33, "cannot compare a text (`category`) with a number (`5`)"),
                (53, "`<` compares numbers, but `\"a\"` is a text"),
                (
                    60,
                    "`nps.latest` is a number, not a condition; compare it, e.g. `nps.latest == …`"
                ),
            ]
        );
        // `compile` returns the first.
        assert_eq!(
            err(r#"churn.bnd == "high" && category == 5"#).message,
            "unknown fact `churn.bnd`; did you mean `churn.band`?"
        );
        // A syntax error after a type error: both, in order.
        let errors = compile_all("category == 5 &&", &schema)
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].message.contains("cannot compare"));
        assert!(errors[1].message.contains("found the end"));
    }

    #[test]
    fn membership_and_list_type_errors() {
        assert_error(
            r#"nps.latest in ["a"]"#,
            11,
            1,
            12,
            "cannot look for a number",
        );
        assert_error(
            r#"nps.latest in [1, "a"]"#,
            18,
            1,
            19,
            "only texts or only numbers",
        );
        assert_error("category in clv.value", 12, 1, 13, "must be a list");
        assert_error(
            "event.company_at_fault in [1]",
            0,
            1,
            1,
            "looks for a text or a number",
        );
        assert_error("tags == \"vip\"", 0, 1, 1, "use `in`");
        assert_error("1 in tags", 2, 1, 3, "cannot look for a number");
        assert_error("has(nope)", 4, 1, 5, "unknown fact `nope`");
        assert_error("attributes == \"x\"", 0, 1, 1, "unknown fact `attributes`");
        assert_error("category < \"z\"", 0, 1, 1, "compares numbers");
        assert_error("consent == true", 8, 1, 9, "`(` after `consent`");
    }

    #[test]
    fn limits_are_enforced() {
        // Length: exactly the limit passes, one byte more fails at the limit.
        let clause = "has(clv.value) || ";
        let mut long = clause.repeat(MAX_SOURCE_BYTES / clause.len());
        long.push_str("true");
        while long.len() < MAX_SOURCE_BYTES {
            long.insert(0, ' ');
        }
        assert_eq!(long.len(), MAX_SOURCE_BYTES);
        assert!(compile(&long, &schema()).is_ok());
        long.insert(0, ' ');
        let e = err(&long);
        assert_eq!(e.position, MAX_SOURCE_BYTES);
        assert!(e.message.contains("at most 4096"), "{e}");

        // Depth: 32 levels pass, 33 fail at the 33rd opening.
        let nested = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
        assert!(compile(&nested(MAX_DEPTH), &schema()).is_ok());
        assert_error(
            &nested(MAX_DEPTH + 1),
            MAX_DEPTH,
            1,
            MAX_DEPTH + 1,
            "deeper than 32",
        );
        let negated = |n: usize| format!("{}true", "!".repeat(n));
        assert!(compile(&negated(MAX_DEPTH), &schema()).is_ok());
        assert_error(
            &negated(MAX_DEPTH + 1),
            MAX_DEPTH,
            1,
            MAX_DEPTH + 1,
            "deeper than 32",
        );
        // `!(` is one level, so negated groups nest as deep as plain ones.
        let both = |n: usize| format!("{}true{}", "!(".repeat(n), ")".repeat(n));
        assert!(compile(&both(MAX_DEPTH), &schema()).is_ok());
        assert!(compile(&both(MAX_DEPTH + 1), &schema()).is_err());

        // List items.
        let list = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("nps.latest in [{}]", items.join(","))
        };
        assert!(compile(&list(MAX_LIST_ITEMS), &schema()).is_ok());
        let too_many = list(MAX_LIST_ITEMS + 1);
        let e = err(&too_many);
        assert!(e.message.contains("at most 256 items"), "{e}");
        assert_eq!(e.position, too_many.rfind(',').map_or(0, |i| i + 1));
    }

    #[test]
    fn converts_into_an_invalid_argument_on_the_given_field() {
        match err("category == 5").into_error("rule.condition") {
            Error::InvalidArgument { reason, violations } => {
                assert_eq!(reason, "INVALID_FIELDS");
                assert_eq!(violations.len(), 1);
                assert_eq!(violations[0].field, "rule.condition");
                assert!(
                    violations[0]
                        .description
                        .starts_with("1:10: cannot compare")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let errors = compile_all("category == 5 && clv.value == \"x\"", &schema())
            .err()
            .unwrap_or_default();
        match errors_to_error(&errors, "rules[2].condition") {
            Error::InvalidArgument { violations, .. } => {
                assert_eq!(violations.len(), 2);
                assert!(violations.iter().all(|v| v.field == "rules[2].condition"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // ----- evaluation --------------------------------------------------------------------

    #[test]
    fn comparisons_follow_their_truth_tables() {
        let facts = Facts::new()
            .with("nps.latest", 6)
            .with("category", "negative")
            .with("event.company_at_fault", true);
        let cases = [
            ("nps.latest == 6", true),
            ("nps.latest != 6", false),
            ("nps.latest < 6", false),
            ("nps.latest <= 6", true),
            ("nps.latest > 5.5", true),
            ("nps.latest >= 7", false),
            ("category == \"negative\"", true),
            ("category == \"Negative\"", false),
            ("category != \"advocate\"", true),
            ("event.company_at_fault", true),
            ("event.company_at_fault == false", false),
            ("category in [\"negative\", \"neutral\"]", true),
            ("category not in [\"negative\", \"neutral\"]", false),
            ("category in []", false),
            ("category not in []", true),
            ("nps.latest in [0, 1, 6]", true),
            ("true", true),
            ("false", false),
        ];
        for (source, expected) in cases {
            let c = ok(source);
            assert_eq!(c.matches(&facts), expected, "{source}");
            assert_eq!(c.evaluate(&facts).matched, expected, "{source}");
        }
    }

    #[test]
    fn connectives_follow_their_truth_tables() {
        for a in [false, true] {
            for b in [false, true] {
                for c in [false, true] {
                    let facts = Facts::new().with("x.a", a).with("x.b", b).with("x.c", c);
                    let schema = FactSchema::new().prefix("x", FactType::Bool);
                    let check = |source: &str, expected: bool| {
                        let condition = compile(source, &schema).map_err(|e| e.to_string());
                        let condition = match condition {
                            Ok(condition) => condition,
                            Err(e) => panic!("{source}: {e}"),
                        };
                        assert_eq!(condition.matches(&facts), expected, "{source} {a} {b} {c}");
                        assert_eq!(condition.evaluate(&facts).matched, expected, "{source}");
                    };
                    check("x.a && x.b", a && b);
                    check("x.a || x.b", a || b);
                    check("!x.a", !a);
                    check("not x.a", !a);
                    check("x.a || x.b && x.c", a || (b && c));
                    check("(x.a || x.b) && x.c", (a || b) && c);
                    check("!x.a && x.b", !a && b);
                    check("!(x.a && x.b)", !(a && b));
                    check("x.a == x.b", a == b);
                }
            }
        }
    }

    #[test]
    fn a_missing_fact_makes_every_comparison_false() {
        let empty = Facts::new();
        for source in [
            "nps.latest <= 6",
            "nps.latest > 6",
            "nps.latest == 6",
            "nps.latest != 6",
            "category in [\"negative\"]",
            "category not in [\"negative\"]",
            "\"vip\" in tags",
            "\"vip\" not in tags",
            "event.company_at_fault",
            "has(nps.latest)",
        ] {
            assert!(!ok(source).matches(&empty), "{source}");
        }
        assert!(ok("!(nps.latest == 6)").matches(&empty));
        assert!(ok("!has(nps.latest)").matches(&empty));
        // NaN counts as missing; a value of the wrong type too (open schema).
        let nan = Facts::new().with("nps.latest", f64::NAN);
        assert!(!ok("nps.latest != 6").matches(&nan));
        assert!(!ok("has(nps.latest)").matches(&nan));
        let wrong = Facts::new().with("nps.latest", "six");
        let open = compile(
            "nps.latest != 6 || nps.latest not in [1]",
            &FactSchema::open(),
        );
        assert_eq!(open.map(|c| c.matches(&wrong)).ok(), Some(false));
    }

    #[test]
    fn consent_needs_purpose_and_channel() {
        let c = ok(r#"consent("marketing", "email")"#);
        assert!(!c.matches(&Facts::new()));
        assert!(!c.matches(&Facts::new().with_consent("marketing", "sms")));
        assert!(!c.matches(&Facts::new().with_consent("service", "email")));
        assert!(c.matches(&Facts::new().with_consent("marketing", "email")));
    }

    #[test]
    fn the_trace_explains_every_clause_with_its_values() {
        let c = ok(
            r#"churn.band == "high" && clv.value >= 200 && consent("marketing", "email") || "vip" in tags"#,
        );
        let facts = Facts::new()
            .with("churn.band", "high")
            .with("clv.value", 150.0)
            .with_consent("marketing", "email");
        let evaluation = c.evaluate(&facts);
        assert!(!evaluation.matched);
        let clauses: Vec<_> = evaluation
            .trace
            .iter()
            .map(|r| (r.clause.as_str(), r.result))
            .collect();
        assert_eq!(
            clauses,
            vec![
                ("churn.band == \"high\"", true),
                ("clv.value >= 200", false),
                ("consent(\"marketing\", \"email\")", true),
                ("\"vip\" in tags", false),
            ]
        );
        assert_eq!(
            evaluation.trace[1].values,
            vec![FactValue {
                name: "clv.value".into(),
                value: Some(Value::Number(150.0))
            }]
        );
        assert_eq!(
            evaluation.trace[3].values,
            vec![FactValue {
                name: "tags".into(),
                value: None
            }]
        );
        assert_eq!(
            evaluation.explain(),
            "churn.band == \"high\" [churn.band = \"high\"]: true; \
             clv.value >= 200 [clv.value = 150]: false; \
             consent(\"marketing\", \"email\") [consent(\"marketing\", \"email\") = true]: true; \
             \"vip\" in tags [tags missing]: false"
        );
    }

    #[test]
    fn documented_defaults_compile_and_match() {
        let detractor = ok(r#"category == "negative" && nps.latest <= 6"#);
        assert!(
            detractor.matches(
                &Facts::new()
                    .with("category", "negative")
                    .with("nps.latest", 3)
            )
        );
        assert!(
            !detractor.matches(
                &Facts::new()
                    .with("category", "negative")
                    .with("nps.latest", 7)
            )
        );

        let retention =
            ok(r#"churn.band == "high" && clv.value >= 200 && consent("marketing", "email")"#);
        let at_risk = Facts::new()
            .with("churn.band", "high")
            .with("clv.value", 350.0)
            .with_consent("marketing", "email");
        assert!(retention.matches(&at_risk));
        assert!(!retention.matches(&at_risk.clone().with("clv.value", 199.99)));

        let referral = ok(
            r#"category == "advocate" && nps.latest >= 9 && rfm.segment in ["Champions", "Loyal"] && consent("marketing", "email")"#,
        );
        assert!(
            referral.matches(
                &Facts::new()
                    .with("category", "advocate")
                    .with("nps.latest", 10)
                    .with("rfm.segment", "Loyal")
                    .with_consent("marketing", "email")
            )
        );

        let survey = ok(
            r#"event.type == "order.delivered" && consent("surveys", "email") && !("no-surveys" in tags)"#,
        );
        assert!(
            survey.matches(
                &Facts::new()
                    .with("event.type", "order.delivered")
                    .with_consent("surveys", "email")
            )
        );

        let apology = ok(
            r#"(event.type == "order.delivered" && event.delay_days >= 2 || event.type == "payment.failed") && event.company_at_fault"#,
        );
        let late = Facts::new()
            .with("event.type", "order.delivered")
            .with("event.delay_days", 3)
            .with("event.company_at_fault", true);
        assert!(apology.matches(&late));
        assert!(!apology.matches(&late.clone().with("event.company_at_fault", false)));
        assert!(!apology.matches(&late.with("event.delay_days", 1)));

        let unhappy = ok("!has(nps.latest) && csat.latest <= 2");
        assert!(unhappy.matches(&Facts::new().with("csat.latest", 1)));
        assert!(!unhappy.matches(&Facts::new().with("csat.latest", 1).with("nps.latest", 3)));

        let win_back = ok(
            r#"rfm.segment in ["At risk", "Can't lose them"] && days_since_last_purchase >= 90 && attributes.tier != "staff""#,
        );
        assert!(
            win_back.matches(
                &Facts::new()
                    .with("rfm.segment", "Can't lose them")
                    .with("days_since_last_purchase", 120)
                    .with("attributes.tier", "gold")
            )
        );
    }

    // ----- properties --------------------------------------------------------------------

    const POOL: [&str; 6] = ["a", "b.c", "category", "clv.value", "tags", "x.y.z"];

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(POOL.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_][a-z0-9_]{0,5}(\\.[a-z_][a-z0-9_]{0,5}){0,2}"
                .prop_filter("not reserved", |s| !RESERVED.contains(&s.as_str())),
        ]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![(-1000i32..1000).prop_map(f64::from), -1.0e6..1.0e6f64]
    }

    fn text_value() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('"'), Just('\\'), Just(' '), any::<char>()],
            0..6,
        )
        .prop_map(String::from_iter)
    }

    fn scalar() -> impl Strategy<Value = Literal> {
        prop_oneof![
            number().prop_map(Literal::Number),
            text_value().prop_map(Literal::Text),
            any::<bool>().prop_map(Literal::Bool),
        ]
    }

    fn list() -> impl Strategy<Value = Literal> {
        prop_oneof![
            proptest::collection::vec(number().prop_map(Literal::Number), 0..4),
            proptest::collection::vec(text_value().prop_map(Literal::Text), 0..4),
        ]
        .prop_map(Literal::List)
    }

    fn op() -> impl Strategy<Value = CompareOp> {
        proptest::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Lt,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ])
    }

    fn atom() -> impl Strategy<Value = Atom> {
        let lit = |l: Literal| Operand::Literal(l);
        prop_oneof![
            (
                name(),
                prop_oneof![Just(CompareOp::Eq), Just(CompareOp::Ne)],
                scalar()
            )
                .prop_map(move |(n, op, l)| Atom::Compare {
                    left: Operand::Fact(n),
                    op,
                    right: lit(l)
                }),
            (name(), op(), number()).prop_map(move |(n, op, x)| Atom::Compare {
                left: Operand::Fact(n),
                op,
                right: lit(Literal::Number(x))
            }),
            (number(), op(), name()).prop_map(move |(x, op, n)| Atom::Compare {
                left: lit(Literal::Number(x)),
                op,
                right: Operand::Fact(n)
            }),
            (name(), op(), name()).prop_map(|(a, op, b)| Atom::Compare {
                left: Operand::Fact(a),
                op,
                right: Operand::Fact(b)
            }),
            (name(), list(), any::<bool>()).prop_map(move |(n, l, negated)| Atom::In {
                needle: Operand::Fact(n),
                list: lit(l),
                negated
            }),
            (text_value(), name(), any::<bool>()).prop_map(move |(t, n, negated)| Atom::In {
                needle: lit(Literal::Text(t)),
                list: Operand::Fact(n),
                negated
            }),
            name().prop_map(|n| Atom::Test(Operand::Fact(n))),
            name().prop_map(|n| Atom::Test(Operand::Has(n))),
            (text_value(), text_value())
                .prop_filter("non-empty", |(p, c)| !p.is_empty() && !c.is_empty())
                .prop_map(|(purpose, channel)| Atom::Test(Operand::Consent { purpose, channel })),
            any::<bool>().prop_map(move |b| Atom::Test(lit(Literal::Bool(b)))),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        atom()
            .prop_map(Expr::Atom)
            .prop_recursive(4, 24, 3, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                    proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                    inner.prop_map(|e| Expr::Not(Box::new(e))),
                ]
            })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop_oneof![number(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)]
                .prop_map(Value::Number),
            text_value().prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            proptest::collection::vec(text_value(), 0..3).prop_map(Value::List),
        ]
    }

    fn facts() -> impl Strategy<Value = Facts> {
        (
            proptest::collection::vec(proptest::option::of(value()), POOL.len()),
            proptest::collection::vec((text_value(), text_value()), 0..3),
        )
            .prop_map(|(values, consents)| {
                let mut facts = Facts::new();
                for (name, value) in POOL.iter().zip(values) {
                    if let Some(value) = value {
                        facts.set(*name, value);
                    }
                }
                for (purpose, channel) in consents {
                    facts.grant(purpose, channel);
                }
                facts
            })
    }

    fn count_atoms(expr: &Expr) -> usize {
        let mut n = 0;
        expr.visit_atoms(&mut |_| n += 1);
        n
    }

    proptest! {
        #[test]
        fn display_then_compile_gives_the_same_tree(expr in expr()) {
            let source = expr.to_string();
            let compiled = compile(&source, &FactSchema::open());
            prop_assert!(compiled.is_ok(), "{source}: {:?}", compiled.err());
            if let Ok(condition) = compiled {
                prop_assert_eq!(condition.expr(), &expr);
                prop_assert_eq!(condition.to_string(), source);
            }
        }

        #[test]
        fn evaluation_never_panics_and_agrees_with_matches(expr in expr(), facts in facts()) {
            if let Ok(condition) = compile(&expr.to_string(), &FactSchema::open()) {
                let evaluation = condition.evaluate(&facts);
                prop_assert_eq!(evaluation.matched, condition.matches(&facts));
                prop_assert_eq!(evaluation.trace.len(), count_atoms(&expr));
                let _ = evaluation.explain();
            }
        }

        #[test]
        fn random_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let source = String::from_utf8_lossy(&bytes);
            let _ = compile_all(&source, &FactSchema::customer());
            let _ = compile_all(&source, &FactSchema::open());
        }

        #[test]
        fn random_token_soup_never_panics_and_errors_are_in_bounds(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "(", ")", "!", "not", "&&", "and", "||", "or", "==", "!=", "<", ">=", "in", "[",
                "]", ",", "\"x\"", "\"", "\\", "1", "-", "-2.5", ".", "a.b", "category", "tags",
                "has", "consent", "true", "false", "=", "&", "|", " ", "\n", "é", "30d",
            ]), 0..40)
        ) {
            let source = parts.concat();
            for schema in [FactSchema::customer(), FactSchema::open()] {
                match compile_all(&source, &schema) {
                    Ok(condition) => {
                        let again = compile(&condition.to_string(), &schema).ok();
                        prop_assert_eq!(again.as_ref().map(Condition::expr), Some(condition.expr()));
                    }
                    Err(errors) => {
                        prop_assert!(!errors.is_empty());
                        for e in errors {
                            prop_assert!(e.position <= source.len());
                            prop_assert!(e.line >= 1 && e.column >= 1);
                        }
                    }
                }
            }
        }
    }
}
