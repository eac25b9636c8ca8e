//! Comment sentiment: a score in [−1, 1], a label and the phrases that drove them, for survey
//! comments in English, Portuguese, French, German, Spanish and Vietnamese.
//!
//! The analyzer is a lexicon with rules, so that every score can be explained word by word:
//!
//! 1. The comment is normalised (Unicode NFC, lower case, typographic apostrophes made plain)
//!    and cut into tokens: words (letters and digits, with an apostrophe inside a word kept,
//!    French elisions such as `n'est` split into `n` and `est`), emoji, and the punctuation
//!    that ends a sentence (`. ! ? …`, a line break) or a clause (`, ; :`). For Portuguese,
//!    French, Spanish and English, accents are ignored when matching, so `nao` finds `não`.
//!    Vietnamese keeps its diacritics (they tell words apart); its words of several syllables
//!    are lexicon phrases of several tokens.
//! 2. The lexicon of the language (`data/sentiment/lexicon-<code>.tsv`, plus the emoji of
//!    `lexicon-common.tsv`) is matched longest phrase first. An entry is a polar word or
//!    phrase with a weight (about ±0.5 to ±3.5; a trailing `*` makes it match any word that
//!    starts so), a negator (`negator`, or `negator_only` for one that is no complaint by
//!    itself), an intensifier or downtoner (a factor for the polar word after it, or, for
//!    `booster_after`, before it, as Vietnamese `đẹp lắm`), a contrast word
//!    (`but`, `mas`, `mais`, `aber`, `pero`, `nhưng`), or a fixed phrase that is neutral (so
//!    that `no doubt` or `nicht nur` is not read as a negation).
//! 3. Each polar entry contributes its weight, multiplied by the factors of the intensifiers
//!    next to it, by [`NEGATION_FACTOR`] when a negator governs it, and, in a sentence with a
//!    contrast word, by [`BEFORE_CONTRAST`] before it or [`AFTER_CONTRAST`] after it. A
//!    negator governs the first polar entry in the [`NEGATION_WINDOW`] tokens after it in the
//!    same clause (`not good`, `não gostei`, `pas mal`), or, in German only, when there is
//!    none, the nearest one in the window before it (`gefällt mir nicht`); the polar entries
//!    right after the one it governs go with it (`not a good bargain`). A clause whose
//!    negators govern no polar entry (`it doesn't fit`, `não funciona`) contributes
//!    [`NEGATION_ALONE`] once, except in Vietnamese (`không` also ends yes/no questions) and
//!    for the negators marked `negator_only` in the lexicon (`without`, `never`, `sem`,
//!    `ohne`: `without effort`).
//! 4. The contributions are summed into `s`, and the score is `s / √(s² + α)` with
//!    α = [`NORMALISATION_ALPHA`]: 0 without polar words, near ±1 for many strong ones. The
//!    label is positive from [`POSITIVE_THRESHOLD`], negative up to [`NEGATIVE_THRESHOLD`],
//!    neutral between.
//!
//! Without a language, it is detected: a comment with letters only Vietnamese uses (ơ, ư, ă,
//! đ, and the vowels with tone marks of Unicode's Latin Extended Additional block) is
//! Vietnamese, otherwise `whatlang` chooses among the six languages.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The version of the analyzer and its lexicons; to be stored beside every score.
pub const SENTIMENT_MODEL_VERSION: &str = "sentiment-lexicon-2";
/// A score at or above this is positive.
pub const POSITIVE_THRESHOLD: f64 = 0.05;
/// A score at or below this is negative.
pub const NEGATIVE_THRESHOLD: f64 = -0.05;
/// α of the normalisation `s / √(s² + α)`: a sum of 3 (one strong word) scores about 0.61.
pub const NORMALISATION_ALPHA: f64 = 15.0;
/// What a negated polar entry is multiplied by: its sign flips and it loses a quarter
/// (`not bad` is less positive than `good`).
pub const NEGATION_FACTOR: f64 = -0.75;
/// The factor of polar entries before a contrast word in their sentence.
pub const BEFORE_CONTRAST: f64 = 0.5;
/// The factor of polar entries after a contrast word in their sentence.
pub const AFTER_CONTRAST: f64 = 1.5;
/// How many tokens a negator reaches, in its clause.
pub const NEGATION_WINDOW: usize = 3;
/// The contribution of a clause whose negators govern no polar entry (`it does not fit`):
/// a mild complaint, counted once a clause.
pub const NEGATION_ALONE: f64 = -1.0;
/// How many intensifiers in a row before a polar entry count.
const BOOSTER_WINDOW: usize = 2;

/// A language the analyzer has a lexicon for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    /// `en`.
    English,
    /// `pt`.
    Portuguese,
    /// `fr`.
    French,
    /// `de`.
    German,
    /// `es`.
    Spanish,
    /// `vi`.
    Vietnamese,
}

impl Language {
    /// Every language, in the order of their codes above.
    pub const ALL: [Language; 6] = [
        Language::English,
        Language::Portuguese,
        Language::French,
        Language::German,
        Language::Spanish,
        Language::Vietnamese,
    ];

    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Portuguese => "pt",
            Language::French => "fr",
            Language::German => "de",
            Language::Spanish => "es",
            Language::Vietnamese => "vi",
        }
    }

    /// The language of a BCP 47 tag or ISO 639 code (`pt`, `pt-BR`, `PT_br`, `por`), by its
    /// first subtag; `None` for any other language.
    pub fn parse(tag: &str) -> Option<Self> {
        let primary = tag
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" | "eng" => Some(Language::English),
            "pt" | "por" => Some(Language::Portuguese),
            "fr" | "fra" | "fre" => Some(Language::French),
            "de" | "deu" | "ger" => Some(Language::German),
            "es" | "spa" => Some(Language::Spanish),
            "vi" | "vie" => Some(Language::Vietnamese),
            _ => None,
        }
    }

    fn lexicon_source(self) -> &'static str {
        match self {
            Language::English => include_str!("../../data/sentiment/lexicon-en.tsv"),
            Language::Portuguese => include_str!("../../data/sentiment/lexicon-pt.tsv"),
            Language::French => include_str!("../../data/sentiment/lexicon-fr.tsv"),
            Language::German => include_str!("../../data/sentiment/lexicon-de.tsv"),
            Language::Spanish => include_str!("../../data/sentiment/lexicon-es.tsv"),
            Language::Vietnamese => include_str!("../../data/sentiment/lexicon-vi.tsv"),
        }
    }

    /// Whether accents are ignored when matching: not in German (`schon` is not `schön`),
    /// not in Vietnamese (tone marks make the words).
    fn folds_accents(self) -> bool {
        !matches!(self, Language::German | Language::Vietnamese)
    }

    /// Whether a negator that governs no polar word is itself a mild complaint (`doesn't
    /// fit`, `não funciona`): not in Vietnamese, where `không` also closes yes/no questions.
    fn negation_alone_counts(self) -> bool {
        self != Language::Vietnamese
    }

    fn whatlang(self) -> whatlang::Lang {
        match self {
            Language::English => whatlang::Lang::Eng,
            Language::Portuguese => whatlang::Lang::Por,
            Language::French => whatlang::Lang::Fra,
            Language::German => whatlang::Lang::Deu,
            Language::Spanish => whatlang::Lang::Spa,
            Language::Vietnamese => whatlang::Lang::Vie,
        }
    }
}

const COMMON_LEXICON: &str = include_str!("../../data/sentiment/lexicon-common.tsv");

/// The label of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SentimentLabel {
    /// Score at or below [`NEGATIVE_THRESHOLD`].
    Negative,
    /// Between the thresholds, including comments without any polar word.
    Neutral,
    /// Score at or above [`POSITIVE_THRESHOLD`].
    Positive,
}

impl SentimentLabel {
    /// The label of a score.
    pub fn of(score: f64) -> Self {
        if score >= POSITIVE_THRESHOLD {
            SentimentLabel::Positive
        } else if score <= NEGATIVE_THRESHOLD {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        }
    }

    /// `negative`, `neutral` or `positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Positive => "positive",
        }
    }
}

/// A phrase of the comment that moved the score, and by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// The words as normalised (lower case), from the first modifier (negator, intensifier)
    /// to the polar word or phrase, e.g. `not very good`.
    pub phrase: String,
    /// Its contribution to the sum `s` the score is computed from (signed).
    pub weight: f64,
}

/// How the language of a comment was settled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LanguageSource {
    /// The caller gave it.
    Given,
    /// Detected from the text, with the detector's confidence in [0, 1].
    Detected {
        /// 1 for the Vietnamese letters rule; `whatlang`'s confidence otherwise.
        confidence: f64,
    },
    /// Nothing to detect from (no letters, or no language of the six stood out): English.
    Default,
}

/// The sentiment of one comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    /// The language whose lexicon was used.
    pub language: Language,
    /// How that language was settled.
    pub language_source: LanguageSource,
    /// In [−1, 1].
    pub score: f64,
    /// From the score and the thresholds.
    pub label: SentimentLabel,
    /// The sum of the contributions before normalisation.
    pub sum: f64,
    /// Every contribution, strongest first (ties in text order).
    pub drivers: Vec<Driver>,
}

/// The language of a comment among the six, with a confidence in [0, 1]; `None` when the
/// text gives no clue.
///
/// Three steps: letters only Vietnamese writes settle it (confidence 1); otherwise the words of
/// the comment are looked up in each language's short list of function words
/// ([`FUNCTION_WORDS`]) and in its lexicon, and a language with more such words than every
/// other wins (confidence: its lead over the runner-up, divided by its count); on a tie,
/// `whatlang` chooses among the tied languages (among all six when no word was found), with
/// its own confidence. Short comments ("Great charger.") are where the word counts matter:
/// trigram statistics alone often miss them.
pub fn detect_language(text: &str) -> Option<(Language, f64)> {
    if text.chars().any(is_vietnamese_letter) {
        return Some((Language::Vietnamese, 1.0));
    }
    let counts: Vec<(Language, usize)> = Language::ALL
        .into_iter()
        .map(|l| (l, cue_words(text, l)))
        .collect();
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let leaders: Vec<Language> = counts
        .iter()
        .filter(|(_, n)| *n == best)
        .map(|(l, _)| *l)
        .collect();
    if best > 0
        && let [leader] = leaders.as_slice()
    {
        let second = counts
            .iter()
            .filter(|(l, _)| l != leader)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        return Some((*leader, (best - second) as f64 / best as f64));
    }
    let info = if best > 0 {
        whatlang::Detector::with_allowlist(leaders.iter().map(|l| l.whatlang()).collect())
            .detect(text)
    } else {
        detector().detect(text)
    }?;
    let language = Language::ALL
        .into_iter()
        .find(|l| l.whatlang() == info.lang())?;
    Some((language, info.confidence()))
}

/// Very frequent words of each language that the other five seldom write (Vietnamese is
/// told by its letters instead).
pub const FUNCTION_WORDS: [(Language, &[&str]); 5] = [
    (
        Language::English,
        &[
            "the", "and", "is", "it", "this", "was", "i", "to", "of", "my", "for", "with", "you",
            "are", "have", "be", "that", "they", "on", "at", "it's", "i'm", "we", "an", "just",
            "would", "will", "had", "has", "very", "from", "so", "were", "our", "your", "been",
        ],
    ),
    (
        Language::Portuguese,
        &[
            "o", "os", "do", "da", "dos", "das", "não", "é", "um", "uma", "foi", "está", "eu",
            "produto", "ao", "pelo", "pela", "também", "você", "isso", "muito", "bem", "mas", "na",
            "nas", "em", "são", "chegou", "entrega", "ele", "ela", "meu", "minha",
        ],
    ),
    (
        Language::French,
        &[
            "le",
            "les",
            "et",
            "est",
            "une",
            "des",
            "du",
            "je",
            "il",
            "ce",
            "pas",
            "très",
            "pour",
            "avec",
            "mais",
            "sur",
            "ai",
            "été",
            "tout",
            "vous",
            "nous",
            "au",
            "aux",
            "c'est",
            "j'ai",
            "n'est",
            "qui",
            "ne",
            "à",
            "produit",
            "livraison",
            "bien",
            "mon",
            "ma",
        ],
    ),
    (
        Language::German,
        &[
            "der",
            "die",
            "das",
            "und",
            "ist",
            "nicht",
            "ich",
            "sehr",
            "mit",
            "ein",
            "eine",
            "war",
            "auf",
            "für",
            "den",
            "dem",
            "auch",
            "aber",
            "wir",
            "hat",
            "habe",
            "wurde",
            "noch",
            "nur",
            "sich",
            "wie",
            "bei",
            "von",
            "zu",
            "mir",
            "ware",
            "lieferung",
        ],
    ),
    (
        Language::Spanish,
        &[
            "el", "los", "las", "y", "muy", "del", "por", "con", "pero", "fue", "está", "lo", "mi",
            "su", "al", "más", "todo", "también", "ha", "producto", "llegó", "una", "pedido",
            "envío", "nos", "hay", "son", "este", "esta", "como",
        ],
    ),
];

/// How many words of `text` are function words or lexicon entries of `language`.
fn cue_words(text: &str, language: Language) -> usize {
    let function_words: &[&str] = FUNCTION_WORDS
        .iter()
        .find(|(l, _)| *l == language)
        .map(|(_, words)| *words)
        .unwrap_or_default();
    let lexicon = lexicon(language);
    // The raw words (elisions kept whole) for the function words, the tokens for the lexicon.
    let raw = text
        .nfc()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect::<String>();
    let function = raw
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| function_words.contains(w))
        .count();
    let lexical = tokenize(text, language)
        .iter()
        .filter(|t| t.end.is_none())
        .filter(|t| lexicon.phrases.contains_key(&t.key) || lexicon.prefix_entry(&t.key).is_some())
        .count();
    function + lexical
}

fn detector() -> &'static whatlang::Detector {
    static DETECTOR: OnceLock<whatlang::Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        whatlang::Detector::with_allowlist(Language::ALL.iter().map(|l| l.whatlang()).collect())
    })
}

/// Letters that, among the six languages, only Vietnamese writes.
fn is_vietnamese_letter(c: char) -> bool {
    matches!(
        c,
        'ơ' | 'Ơ' | 'ư' | 'Ư' | 'ă' | 'Ă' | 'đ' | 'Đ' | '\u{1EA0}'..='\u{1EF9}'
    )
}

/// The sentiment of a comment in `language`, or in the detected language when `None`.
pub fn analyze(text: &str, language: Option<Language>) -> Sentiment {
    let (language, language_source) = match language {
        Some(l) => (l, LanguageSource::Given),
        None => match detect_language(text) {
            Some((l, confidence)) => (l, LanguageSource::Detected { confidence }),
            None => (Language::English, LanguageSource::Default),
        },
    };
    let tokens = tokenize(text, language);
    let items = lexicon(language).match_items(&tokens);
    let mut drivers = Vec::new();
    for sentence in items.split(|i| matches!(i.kind, Kind::SentenceEnd)) {
        score_sentence(sentence, &tokens, language, &mut drivers);
    }
    let sum: f64 = drivers.iter().map(|d| d.weight).sum();
    let score = (sum / (sum * sum + NORMALISATION_ALPHA).sqrt()).clamp(-1.0, 1.0);
    drivers.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    Sentiment {
        language,
        language_source,
        score,
        label: SentimentLabel::of(score),
        sum,
        drivers,
    }
}

/// A token of a comment.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    /// Lower case, NFC.
    text: String,
    /// What the lexicon is matched on: `text`, without accents where the language folds
    /// them.
    key: String,
    /// A sentence or clause end rather than a word.
    end: Option<End>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Sentence,
    Clause,
}

const FRENCH_ELISIONS: &[&str] = &[
    "l", "d", "j", "n", "m", "t", "s", "c", "qu", "jusqu", "lorsqu", "puisqu",
];

fn fold(text: &str, language: Language) -> String {
    if language.folds_accents() {
        text.nfd().filter(|c| !is_combining_mark(*c)).collect()
    } else {
        text.to_owned()
    }
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x2300..=0x23FF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1FAFF)
}

fn tokenize(text: &str, language: Language) -> Vec<Token> {
    let normalised: String = text
        .nfc()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' | '´' => '\'',
            c => c,
        })
        .collect();
    let chars: Vec<char> = normalised.chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let push_end = |tokens: &mut Vec<Token>, end: End| match tokens.last_mut() {
        Some(Token {
            end: Some(last), ..
        }) => {
            if end == End::Sentence {
                *last = End::Sentence;
            }
        }
        _ => tokens.push(Token {
            text: String::new(),
            key: String::new(),
            end: Some(end),
        }),
    };
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() || is_combining_mark(c) {
            word.push(c);
            continue;
        }
        let inside_word = !word.is_empty() && chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
        if c == '\'' && inside_word {
            word.push(c);
            continue;
        }
        flush_word(&mut word, language, &mut tokens);
        match c {
            '.' | '!' | '?' | '…' | '\n' | '¡' | '¿' => push_end(&mut tokens, End::Sentence),
            ',' | ';' | ':' => push_end(&mut tokens, End::Clause),
            c if is_emoji(c) => {
                let text = c.to_string();
                tokens.push(Token {
                    key: text.clone(),
                    text,
                    end: None,
                });
            }
            _ => {}
        }
    }
    flush_word(&mut word, language, &mut tokens);
    tokens
}

fn flush_word(word: &mut String, language: Language, tokens: &mut Vec<Token>) {
    if word.is_empty() {
        return;
    }
    let text = std::mem::take(word);
    let mut push = |text: String| {
        tokens.push(Token {
            key: fold(&text, language),
            text,
            end: None,
        })
    };
    if language == Language::French
        && let Some((head, tail)) = text.split_once('\'')
        && FRENCH_ELISIONS.contains(&head)
        && !tail.is_empty()
    {
        push(head.to_owned());
        push(tail.to_owned());
        return;
    }
    push(text);
}

/// What a lexicon entry is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Polar(f64),
    /// `complains`: whether, governing no polar entry, it is a mild complaint by itself
    /// (`doesn't fit`; not `without effort`).
    Negator {
        complains: bool,
    },
    /// An intensifier (factor above 1) or downtoner (below 1) of the polar entry after it
    /// (`before`) and/or before it (`after`).
    Booster {
        factor: f64,
        before: bool,
        after: bool,
    },
    Contrast,
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Entry(Entry),
    Word,
    ClauseEnd,
    SentenceEnd,
}

/// A matched span of tokens.
#[derive(Debug, Clone, Copy)]
struct Item {
    kind: Kind,
    /// Token range.
    start: usize,
    end: usize,
}

#[derive(Debug, Default)]
struct Lexicon {
    phrases: HashMap<String, Entry>,
    prefixes: HashMap<String, Entry>,
    longest_phrase: usize,
    /// Lines (file:number) that could not be read.
    malformed: Vec<String>,
}

fn lexicon(language: Language) -> &'static Lexicon {
    static LEXICONS: OnceLock<Vec<(Language, Lexicon)>> = OnceLock::new();
    let all = LEXICONS.get_or_init(|| {
        Language::ALL
            .into_iter()
            .map(|l| (l, Lexicon::parse(l)))
            .collect()
    });
    all.iter()
        .find(|(l, _)| *l == language)
        .map(|(_, lex)| lex)
        .unwrap_or_else(|| empty_lexicon())
}

fn empty_lexicon() -> &'static Lexicon {
    static EMPTY: OnceLock<Lexicon> = OnceLock::new();
    EMPTY.get_or_init(Lexicon::default)
}

impl Lexicon {
    /// Reads the language's file and the common one. Lines: `kind<TAB>phrase[<TAB>number]`,
    /// `#` comments and blank lines skipped; kinds `polar` (weight), `negator`, `negator_only`,
    /// `booster`, `booster_after`, `booster_both` (factor), `contrast`, `neutral`.
    fn parse(language: Language) -> Self {
        let mut lexicon = Lexicon::default();
        for (file, source) in [
            ("lexicon-common.tsv", COMMON_LEXICON),
            ("lexicon.tsv of the language", language.lexicon_source()),
        ] {
            for (n, line) in source.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                if lexicon.add(line, language).is_none() {
                    lexicon.malformed.push(format!("{file}:{}", n + 1));
                }
            }
        }
        lexicon
    }

    fn add(&mut self, line: &str, language: Language) -> Option<()> {
        let mut fields = line.split('\t');
        let kind = fields.next()?;
        let phrase = fields.next()?.trim();
        let number = fields.next().map(|n| n.trim().parse::<f64>());
        let number = match number {
            Some(Ok(n)) if n.is_finite() => Some(n),
            Some(_) => return None,
            None => None,
        };
        if fields.next().is_some() || phrase.is_empty() {
            return None;
        }
        // Only what the tokenizer keeps: a `+` or `/` would silently vanish from the phrase.
        let body = phrase.strip_suffix('*').unwrap_or(phrase);
        if !body.chars().all(|c| {
            c.is_alphanumeric() || is_combining_mark(c) || is_emoji(c) || " '-".contains(c)
        }) {
            return None;
        }
        let booster = |before, after| {
            number.filter(|f| *f > 0.0).map(|factor| Entry::Booster {
                factor,
                before,
                after,
            })
        };
        let entry = match kind {
            "polar" => Entry::Polar(number.filter(|w| *w != 0.0)?),
            "negator" if number.is_none() => Entry::Negator { complains: true },
            "negator_only" if number.is_none() => Entry::Negator { complains: false },
            "booster" => booster(true, false)?,
            "booster_after" => booster(false, true)?,
            "booster_both" => booster(true, true)?,
            "contrast" if number.is_none() => Entry::Contrast,
            "neutral" if number.is_none() => Entry::Neutral,
            _ => return None,
        };
        // The phrase goes through the tokenizer so that it matches what comments become.
        let keys: Vec<String> = match phrase.strip_suffix('*') {
            Some(stem) => vec![fold(&stem.to_lowercase(), language)],
            None => tokenize(phrase, language)
                .into_iter()
                .filter(|t| t.end.is_none())
                .map(|t| t.key)
                .collect(),
        };
        if keys.is_empty() {
            return None;
        }
        if phrase.ends_with('*') {
            if keys[0].contains(' ') || keys[0].chars().count() < 3 {
                return None;
            }
            self.prefixes.insert(keys[0].clone(), entry);
        } else {
            self.longest_phrase = self.longest_phrase.max(keys.len());
            self.phrases.insert(keys.join(" "), entry);
        }
        Some(())
    }

    /// The entry of a single word that only a prefix entry matches: the longest prefix.
    fn prefix_entry(&self, key: &str) -> Option<Entry> {
        let mut ends: Vec<usize> = key.char_indices().map(|(i, _)| i).skip(3).collect();
        ends.push(key.len());
        ends.into_iter()
            .rev()
            .find_map(|end| self.prefixes.get(&key[..end]).copied())
    }

    /// Longest match first at each token.
    fn match_items(&self, tokens: &[Token]) -> Vec<Item> {
        let mut items = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            match tokens[i].end {
                Some(End::Sentence) => {
                    items.push(Item {
                        kind: Kind::SentenceEnd,
                        start: i,
                        end: i + 1,
                    });
                    i += 1;
                    continue;
                }
                Some(End::Clause) => {
                    items.push(Item {
                        kind: Kind::ClauseEnd,
                        start: i,
                        end: i + 1,
                    });
                    i += 1;
                    continue;
                }
                None => {}
            }
            let words = tokens[i..]
                .iter()
                .take(self.longest_phrase.max(1))
                .take_while(|t| t.end.is_none())
                .count();
            let mut matched = None;
            for len in (1..=words).rev() {
                let key = tokens[i..i + len]
                    .iter()
                    .map(|t| t.key.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(entry) = self.phrases.get(&key) {
                    matched = Some((*entry, len));
                    break;
                }
            }
            let (kind, len) = match matched {
                Some((entry, len)) => (Kind::Entry(entry), len),
                None => match self.prefix_entry(&tokens[i].key) {
                    Some(entry) => (Kind::Entry(entry), 1),
                    None => (Kind::Word, 1),
                },
            };
            items.push(Item {
                kind,
                start: i,
                end: i + len,
            });
            i += len;
        }
        items
    }
}

/// Scores the polar entries of one sentence into `drivers`.
fn score_sentence(items: &[Item], tokens: &[Token], language: Language, drivers: &mut Vec<Driver>) {
    // German puts `nicht` after the verb it negates (`gefällt mir nicht`); elsewhere a
    // negator looking back mostly meets the end of an earlier phrase (`useless and was not new`).
    let looks_back = language == Language::German;
    // Clause number of every item.
    let mut clause = Vec::with_capacity(items.len());
    let mut c = 0;
    for item in items {
        if matches!(item.kind, Kind::ClauseEnd) {
            c += 1;
        }
        clause.push(c);
    }
    let is_polar = |k: usize| matches!(items[k].kind, Kind::Entry(Entry::Polar(_)));

    // Which negator governs which polar entry.
    let mut negated_by: Vec<Option<usize>> = vec![None; items.len()];
    // Whether a negator of the clause governs a polar entry.
    let mut governing = vec![false; c + 1];
    for (j, item) in items.iter().enumerate() {
        if !matches!(item.kind, Kind::Entry(Entry::Negator { .. })) {
            continue;
        }
        let after = (j + 1..items.len().min(j + 1 + NEGATION_WINDOW))
            .take_while(|&k| clause[k] == clause[j])
            .find(|&k| is_polar(k));
        let target = after.or_else(|| {
            if !looks_back {
                return None;
            }
            (j.saturating_sub(NEGATION_WINDOW)..j)
                .rev()
                .take_while(|&k| clause[k] == clause[j])
                .find(|&k| is_polar(k))
        });
        if let Some(k) = target {
            negated_by[k].get_or_insert(j);
            governing[clause[j]] = true;
            // The polar entries right after it go with it (`not a good bargain`).
            for m in (k + 1..items.len()).take_while(|&m| is_polar(m)) {
                negated_by[m].get_or_insert(j);
            }
        }
    }
    // A clause whose negators govern no polar entry (`does not fit`) counts as mildly
    // negative, once, where the language allows it.
    if language.negation_alone_counts() {
        let mut counted = vec![false; c + 1];
        for (j, item) in items.iter().enumerate() {
            if matches!(item.kind, Kind::Entry(Entry::Negator { complains: true }))
                && !governing[clause[j]]
                && !counted[clause[j]]
            {
                counted[clause[j]] = true;
                drivers.push(Driver {
                    phrase: phrase_of(tokens, items[j].start, items[j].end),
                    weight: NEGATION_ALONE,
                });
            }
        }
    }

    let contrast = items
        .iter()
        .position(|i| matches!(i.kind, Kind::Entry(Entry::Contrast)));

    for (k, item) in items.iter().enumerate() {
        let Kind::Entry(Entry::Polar(weight)) = item.kind else {
            continue;
        };
        let mut factor = 1.0;
        let mut first = k;
        let mut last = k;
        // Intensifiers just before (negators in between are passed over: `not very good`).
        let mut boosters = 0;
        for b in (0..k).rev() {
            match items[b].kind {
                Kind::Entry(Entry::Booster {
                    factor: f,
                    before: true,
                    ..
                }) if boosters < BOOSTER_WINDOW => {
                    factor *= f;
                    boosters += 1;
                    first = b;
                }
                Kind::Entry(Entry::Negator { .. }) => {}
                _ => break,
            }
        }
        // Intensifiers just after (`đẹp lắm`, `bom demais`).
        if let Some(Kind::Entry(Entry::Booster {
            factor: f,
            after: true,
            ..
        })) = items.get(k + 1).map(|i| i.kind)
        {
            factor *= f;
            last = k + 1;
        }
        if let Some(j) = negated_by[k] {
            factor *= NEGATION_FACTOR;
            first = first.min(j);
            last = last.max(j);
        }
        match contrast {
            Some(c) if k < c => factor *= BEFORE_CONTRAST,
            Some(c) if k > c => factor *= AFTER_CONTRAST,
            _ => {}
        }
        drivers.push(Driver {
            phrase: phrase_of(tokens, items[first].start, items[last].end),
            weight: weight * factor,
        });
    }
}

/// The words of tokens `start..end`, as normalised.
fn phrase_of(tokens: &[Token], start: usize, end: usize) -> String {
    tokens[start..end]
        .iter()
        .filter(|t| t.end.is_none())
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::strategy::Strategy;

    use super::*;

    fn score(text: &str, language: Language) -> f64 {
        analyze(text, Some(language)).score
    }

    fn label(text: &str, language: Language) -> SentimentLabel {
        analyze(text, Some(language)).label
    }

    #[test]
    fn every_lexicon_line_is_read() {
        for l in Language::ALL {
            let lex = lexicon(l);
            assert!(lex.malformed.is_empty(), "{l:?}: lines {:?}", lex.malformed);
            assert!(lex.phrases.len() + lex.prefixes.len() > 100, "{l:?}");
        }
    }

    #[test]
    fn languages_parse_from_tags() {
        assert_eq!(Language::parse("pt-BR"), Some(Language::Portuguese));
        assert_eq!(Language::parse("DE_at"), Some(Language::German));
        assert_eq!(Language::parse("vie"), Some(Language::Vietnamese));
        assert_eq!(Language::parse("it"), None);
        assert_eq!(Language::parse(""), None);
        for l in Language::ALL {
            assert_eq!(Language::parse(l.code()), Some(l));
        }
    }

    #[test]
    fn tokens_keep_words_split_elisions_and_fold_accents() {
        let t: Vec<String> = tokenize("C’est NUL, n'est-ce pas…", Language::French)
            .into_iter()
            .map(|t| if t.end.is_some() { "|".into() } else { t.key })
            .collect();
        assert_eq!(t, ["c", "est", "nul", "|", "n", "est", "ce", "pas", "|"]);
        let t: Vec<String> = tokenize("Não gostei", Language::Portuguese)
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(t, ["nao", "gostei"]);
        // German keeps umlauts apart: schön is not schon.
        let t: Vec<String> = tokenize("schön", Language::German)
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(t, ["schön"]);
        let t: Vec<String> = tokenize("Rất hài lòng 👍", Language::Vietnamese)
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(t, ["rất", "hài", "lòng", "👍"]);
    }

    #[test]
    fn negation_flips_and_softens() {
        let good = score("The product is good", Language::English);
        let not_good = score("The product is not good", Language::English);
        assert!(good > 0.0 && not_good < 0.0, "{good} {not_good}");
        assert!(not_good.abs() < good.abs());
        assert!(score("not bad at all", Language::English) > 0.0);
        assert!(score("I didn't like the delivery", Language::English) < 0.0);
        assert_eq!(
            label("Não gostei do produto", Language::Portuguese),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("Gostei do produto", Language::Portuguese),
            SentimentLabel::Positive
        );
        assert_eq!(
            label("Das Essen war nicht gut", Language::German),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("Das gefällt mir nicht", Language::German),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("Das gefällt mir", Language::German),
            SentimentLabel::Positive
        );
        assert_eq!(
            label("C'est pas mal du tout", Language::French),
            SentimentLabel::Positive
        );
        assert_eq!(
            label("Ce n'est pas bon", Language::French),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("No me gustó nada", Language::Spanish),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("Không hài lòng", Language::Vietnamese),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("Hài lòng", Language::Vietnamese),
            SentimentLabel::Positive
        );
    }

    #[test]
    fn negation_stays_in_its_clause() {
        // "no" belongs to the first clause: the second one stays positive.
        let s = analyze("No complaints, great service", Some(Language::English));
        assert!(s.drivers.iter().all(|d| d.weight > 0.0), "{s:?}");
        // Fixed phrases with a negator in them are not negations.
        let s = analyze("No doubt the best pizza in town", Some(Language::English));
        assert_eq!(s.label, SentimentLabel::Positive, "{s:?}");
    }

    #[test]
    fn a_negation_governing_no_polar_word_is_a_mild_complaint() {
        let s = analyze("It does not open.", Some(Language::English));
        assert_eq!(s.label, SentimentLabel::Negative, "{s:?}");
        assert_eq!(s.drivers.len(), 1);
        assert_eq!(
            (s.drivers[0].phrase.as_str(), s.drivers[0].weight),
            ("not", NEGATION_ALONE)
        );
        // Once a clause, and not on top of a negation that governs a polar word.
        let s = analyze(
            "It doesn't open and doesn't charge",
            Some(Language::English),
        );
        assert_eq!(s.drivers.len(), 1, "{s:?}");
        let s = analyze(
            "It doesn't open, it doesn't charge",
            Some(Language::English),
        );
        assert_eq!(s.drivers.len(), 2, "{s:?}");
        let s = analyze("The case is not good", Some(Language::English));
        assert_eq!(s.drivers.len(), 1, "{s:?}");
        assert_eq!(s.drivers[0].phrase, "not good");
        assert_eq!(
            label("O pedido não chegou", Language::Portuguese),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("El pedido no llegó", Language::Spanish),
            SentimentLabel::Negative
        );
        // Negators that are no complaint by themselves.
        for text in ["I set it up without the manual", "I never used the manual"] {
            let s = analyze(text, Some(Language::English));
            assert_eq!(s.label, SentimentLabel::Neutral, "{s:?}");
        }
        // Vietnamese `không` also ends a yes/no question.
        assert_eq!(
            label("Shop có bán size lớn không?", Language::Vietnamese),
            SentimentLabel::Neutral
        );
    }

    #[test]
    fn negation_reaches_the_polar_words_right_after_its_target() {
        let s = analyze("Not a good bargain", Some(Language::English));
        assert_eq!(s.label, SentimentLabel::Negative, "{s:?}");
        assert!(s.drivers.iter().all(|d| d.weight < 0.0), "{s:?}");
        // A word between them ends the reach.
        let s = analyze("Not good at first, a bargain", Some(Language::English));
        assert!(s.drivers.iter().any(|d| d.weight > 0.0), "{s:?}");
    }

    #[test]
    fn negation_raised_over_think_reaches_the_clause_after_it() {
        assert_eq!(
            label("I don't think we will be back", Language::English),
            SentimentLabel::Negative
        );
        assert_eq!(
            label("I do not believe it is worth it", Language::English),
            SentimentLabel::Negative
        );
        // Astonishment, not negation.
        assert_eq!(
            label("I could not believe how dirty it was", Language::English),
            SentimentLabel::Negative
        );
    }

    #[test]
    fn intensifiers_and_downtoners_scale() {
        let good = score("good", Language::English);
        let very = score("very good", Language::English);
        let bit = score("a bit good", Language::English);
        assert!(
            very > good && good > bit && bit > 0.0,
            "{very} {good} {bit}"
        );
        assert!(score("muito bom", Language::Portuguese) > score("bom", Language::Portuguese));
        assert!(score("sehr gut", Language::German) > score("gut", Language::German));
        assert!(score("très bien", Language::French) > score("bien", Language::French));
        assert!(score("muy bueno", Language::Spanish) > score("bueno", Language::Spanish));
        // Vietnamese intensifiers may follow the word.
        assert!(score("đẹp lắm", Language::Vietnamese) > score("đẹp", Language::Vietnamese));
        assert!(score("rất tốt", Language::Vietnamese) > score("tốt", Language::Vietnamese));
        // "not very good" is negative but milder than "bad".
        let nvg = score("not very good", Language::English);
        assert!(nvg < 0.0 && nvg > score("very bad", Language::English));
    }

    #[test]
    fn the_clause_after_but_weighs_more() {
        let s = analyze(
            "The delivery was fast but the product is bad",
            Some(Language::English),
        );
        assert_eq!(s.label, SentimentLabel::Negative, "{s:?}");
        let s = analyze(
            "The product is bad but the support was great",
            Some(Language::English),
        );
        assert_eq!(s.label, SentimentLabel::Positive, "{s:?}");
        assert_eq!(
            label(
                "O produto é bom, mas a entrega foi péssima",
                Language::Portuguese
            ),
            SentimentLabel::Negative
        );
        assert_eq!(
            label(
                "Lieferung langsam, aber das Produkt ist super",
                Language::German
            ),
            SentimentLabel::Positive
        );
    }

    #[test]
    fn each_language_reads_typical_comments() {
        let cases: &[(Language, &str, SentimentLabel)] = &[
            (
                Language::English,
                "Terrible customer service, I want a refund",
                SentimentLabel::Negative,
            ),
            (
                Language::English,
                "Excellent quality and fast shipping, highly recommend",
                SentimentLabel::Positive,
            ),
            (
                Language::Portuguese,
                "Produto excelente, chegou antes do prazo",
                SentimentLabel::Positive,
            ),
            (
                Language::Portuguese,
                "Péssimo atendimento, não recomendo",
                SentimentLabel::Negative,
            ),
            (
                Language::French,
                "Livraison rapide, produit conforme, je recommande",
                SentimentLabel::Positive,
            ),
            (
                Language::French,
                "Très déçu, article arrivé cassé",
                SentimentLabel::Negative,
            ),
            (
                Language::German,
                "Schnelle Lieferung, alles bestens",
                SentimentLabel::Positive,
            ),
            (
                Language::German,
                "Leider kaputt angekommen, sehr enttäuscht",
                SentimentLabel::Negative,
            ),
            (
                Language::Spanish,
                "Muy buena atención, todo perfecto",
                SentimentLabel::Positive,
            ),
            (
                Language::Spanish,
                "Pésima calidad, se rompió en una semana",
                SentimentLabel::Negative,
            ),
            (
                Language::Vietnamese,
                "Sản phẩm tuyệt vời, giao hàng nhanh",
                SentimentLabel::Positive,
            ),
            (
                Language::Vietnamese,
                "Hàng kém chất lượng, rất thất vọng",
                SentimentLabel::Negative,
            ),
        ];
        for (l, text, expected) in cases {
            let s = analyze(text, Some(*l));
            assert_eq!(s.label, *expected, "{l:?} {text}: {s:?}");
        }
    }

    #[test]
    fn no_polar_word_is_neutral() {
        let s = analyze("I received the parcel on Tuesday", Some(Language::English));
        assert_eq!((s.score, s.label), (0.0, SentimentLabel::Neutral));
        assert!(s.drivers.is_empty());
        let s = analyze("", None);
        assert_eq!(s.label, SentimentLabel::Neutral);
        assert_eq!(s.language_source, LanguageSource::Default);
    }

    #[test]
    fn scores_stay_within_bounds() {
        let many = "excellent amazing perfect love ".repeat(50);
        let s = score(&many, Language::English);
        assert!(s > 0.95 && s <= 1.0, "{s}");
        let many = "horrible awful worst hate ".repeat(50);
        let s = score(&many, Language::English);
        assert!((-1.0..-0.95).contains(&s), "{s}");
    }

    #[test]
    fn drivers_explain_the_score() {
        let s = analyze(
            "The staff was not very friendly but the food was excellent!",
            Some(Language::English),
        );
        let phrases: Vec<&str> = s.drivers.iter().map(|d| d.phrase.as_str()).collect();
        assert_eq!(phrases, ["excellent", "not very friendly"], "{s:?}");
        assert!(s.drivers[0].weight > 0.0 && s.drivers[1].weight < 0.0);
        let sum: f64 = s.drivers.iter().map(|d| d.weight).sum();
        assert!((sum - s.sum).abs() < 1e-12);
        assert!((s.score - s.sum / (s.sum * s.sum + NORMALISATION_ALPHA).sqrt()).abs() < 1e-12);
        let s = analyze("Das gefällt mir nicht", Some(Language::German));
        assert_eq!(s.drivers[0].phrase, "gefällt mir nicht");
    }

    #[test]
    fn language_is_detected_when_not_given() {
        let cases = [
            (
                "The delivery was late and the box was damaged",
                Language::English,
            ),
            (
                "A entrega atrasou e o atendimento não resolveu o problema",
                Language::Portuguese,
            ),
            (
                "La livraison était en retard et le colis était abîmé",
                Language::French,
            ),
            (
                "Die Lieferung kam zu spät und die Verpackung war beschädigt",
                Language::German,
            ),
            (
                "El pedido llegó tarde y la caja estaba dañada",
                Language::Spanish,
            ),
            ("Giao hàng chậm quá", Language::Vietnamese),
            // Short ones, where the function words and lexicons decide.
            ("Great charger.", Language::English),
            ("Bad choice.", Language::English),
            ("Não gostei.", Language::Portuguese),
            ("Très déçu.", Language::French),
            ("Sehr enttäuscht.", Language::German),
            ("Pésima atención.", Language::Spanish),
        ];
        for (text, expected) in cases {
            let s = analyze(text, None);
            assert_eq!(s.language, expected, "{text}");
            assert!(matches!(s.language_source, LanguageSource::Detected { .. }));
        }
        assert_eq!(
            analyze("Não gostei", Some(Language::English)).language_source,
            LanguageSource::Given
        );
    }

    const WORDS: &[&str] = &[
        "not",
        "very",
        "good",
        "bad",
        "but",
        ",",
        ".",
        "!",
        "a bit",
        "no",
        "doubt",
        "nicht",
        "gut",
        "gefällt",
        "mir",
        "sehr",
        "aber",
        "não",
        "gostei",
        "muito",
        "pas",
        "mal",
        "n'est",
        "très",
        "no",
        "me",
        "gustó",
        "pero",
        "rất",
        "tốt",
        "lắm",
        "không",
        "hài",
        "lòng",
        "nhưng",
        "👍",
        "😡",
        "excellent",
        "terrible",
        "at all",
        "don't",
        "waste",
    ];

    proptest::proptest! {
        #[test]
        fn any_text_scores_within_bounds_and_explains_its_sum(
            text in proptest::prop_oneof![
                "\\PC{0,200}",
                proptest::collection::vec(proptest::sample::select(WORDS), 0..40)
                    .prop_map(|w| w.join(" ")),
            ],
            pick in 0usize..7,
        ) {
            let language = Language::ALL.get(pick).copied();
            let s = analyze(&text, language);
            proptest::prop_assert!((-1.0..=1.0).contains(&s.score), "{s:?}");
            proptest::prop_assert_eq!(s.label, SentimentLabel::of(s.score));
            let sum: f64 = s.drivers.iter().map(|d| d.weight).sum();
            proptest::prop_assert!((sum - s.sum).abs() < 1e-9);
            proptest::prop_assert!(s.drivers.iter().all(|d| !d.phrase.is_empty() && d.weight != 0.0));
        }
    }
}
