//! Bearer-token authentication and scope-based authorization.
//!
//! Tokens are configured up front ([`TokenConfig`]); the middleware turns the `authorization`
//! header of each call into a [`Principal`] and checks it against the [`Access`] the method needs.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ERROR_DOMAIN;

/// The scope that grants every other scope.
pub const ADMIN_SCOPE: &str = "admin";

/// One configured bearer token: who it identifies and what it may do.
///
/// `Debug` redacts the token so a logged configuration does not leak it.
#[derive(Clone, serde::Deserialize)]
pub struct TokenConfig {
    /// Name of the caller, e.g. `ingest-bot`.
    pub principal: String,
    /// Scopes granted to the caller, e.g. `touchpoints:read`; `admin` grants all.
    pub scopes: Vec<String>,
    /// The secret the caller sends as `authorization: Bearer <token>`.
    pub token: String,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("principal", &self.principal)
            .field("scopes", &self.scopes)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Why a `PRINCIPAL:SCOPE1+SCOPE2:TOKEN` string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token configuration: {0} (expected PRINCIPAL:SCOPE1+SCOPE2:TOKEN)")]
pub struct ParseTokenConfigError(&'static str);

impl FromStr for TokenConfig {
    type Err = ParseTokenConfigError;

    /// Parses `PRINCIPAL:SCOPE1+SCOPE2:TOKEN`, e.g.
    /// `crm-sync:touchpoints:read+touchpoints:write:4b1d6a0e`. Each scope is `admin` or
    /// `area:verb` (one `:`), so the scopes end unambiguously and the token is the rest: it may
    /// contain `:` itself. An empty scope list is written `PRINCIPAL::TOKEN`. The error never
    /// echoes the input, which holds a secret.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((principal, rest)) = s.split_once(':') else {
            return Err(ParseTokenConfigError("missing ':' after the principal"));
        };
        let principal = principal.trim();
        if principal.is_empty() {
            return Err(ParseTokenConfigError("empty principal"));
        }
        let mut scopes = Vec::new();
        let token = match rest.strip_prefix(':') {
            Some(token) => token,
            None => {
                let mut rest = rest;
                loop {
                    let (scope, after) = take_scope(rest).ok_or(ParseTokenConfigError(
                        "each scope must be `admin` or `area:verb`",
                    ))?;
                    scopes.push(scope.to_owned());
                    if let Some(next) = after.strip_prefix('+') {
                        rest = next;
                    } else if let Some(token) = after.strip_prefix(':') {
                        break token;
                    } else {
                        return Err(ParseTokenConfigError("missing ':' before the token"));
                    }
                }
            }
        };
        if token.is_empty() {
            return Err(ParseTokenConfigError("empty token"));
        }
        Ok(TokenConfig {
            principal: principal.to_owned(),
            scopes,
            token: token.to_owned(),
        })
    }
}

/// Splits one scope (`admin` or `area:verb`) off the front of `s`; the rest starts at the next
/// `+` or `:`, or is empty.
fn take_scope(s: &str) -> Option<(&str, &str)> {
    if let Some(after) = s.strip_prefix(ADMIN_SCOPE)
        && (after.starts_with('+') || after.starts_with(':'))
    {
        return Some((ADMIN_SCOPE, after));
    }
    let (area, after_area) = s.split_once(':')?;
    if area.is_empty() || area.contains('+') {
        return None;
    }
    let verb_len = after_area.find([':', '+']).unwrap_or(after_area.len());
    if verb_len == 0 {
        return None;
    }
    let scope_len = area.len() + 1 + verb_len;
    Some((&s[..scope_len], &s[scope_len..]))
}

/// The authenticated caller, inserted into every request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Name of the caller (from its [`TokenConfig`]), or `anonymous`.
    pub name: String,
    /// Scopes granted to the caller.
    pub scopes: BTreeSet<String>,
}

impl Principal {
    /// The caller when no tokens are configured: named `anonymous`, with scope `admin`.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            scopes: BTreeSet::from([ADMIN_SCOPE.to_owned()]),
        }
    }

    /// An unidentified caller of a public method while tokens are configured: no scopes.
    pub(crate) fn unidentified() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            scopes: BTreeSet::new(),
        }
    }

    /// Whether the caller holds `scope`; `admin` grants every scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(ADMIN_SCOPE) || self.scopes.contains(scope)
    }
}

/// Reads the principal of a tonic request (set by the middleware); anonymous if absent.
pub fn principal<T>(req: &tonic::Request<T>) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

/// What an RPC needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone may call it, with or without a token.
    Public,
    /// The caller needs this scope (or `admin`).
    Scope(&'static str),
}

/// The configured tokens, looked up in constant time.
pub(crate) struct TokenStore {
    entries: Vec<TokenEntry>,
}

struct TokenEntry {
    digest: [u8; 32],
    principal: Principal,
}

impl TokenStore {
    pub(crate) fn new(tokens: &[TokenConfig]) -> Self {
        let entries = tokens
            .iter()
            .map(|config| TokenEntry {
                digest: Sha256::digest(config.token.as_bytes()).into(),
                principal: Principal {
                    name: config.principal.clone(),
                    scopes: config.scopes.iter().cloned().collect(),
                },
            })
            .collect();
        TokenStore { entries }
    }

    /// Whether any token is configured (else every caller is [`Principal::anonymous`]).
    pub(crate) fn is_enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The principal of `presented`, if it is a configured token.
    ///
    /// Both sides are hashed first, so the comparison takes the same time whatever the length
    /// of either token, and every configured token is compared (no early exit).
    pub(crate) fn lookup(&self, presented: &str) -> Option<&Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let equal = entry.digest.ct_eq(&digest);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.entries.get(i))
                .map(|entry| &entry.principal)
        } else {
            None
        }
    }

    /// The principal of the caller that sent `authorization`, or the status to answer.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Principal, Status> {
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "MISSING_TOKEN",
                "this call needs a bearer token in the authorization header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(unauthenticated(
                "MISSING_TOKEN",
                "the authorization header must be `Bearer <token>`",
            ));
        };
        self.lookup(token)
            .cloned()
            .ok_or_else(|| unauthenticated("INVALID_TOKEN", "the bearer token is not valid"))
    }

    /// Decides whether the call may proceed, and as whom.
    pub(crate) fn authorize(
        &self,
        access: Option<Access>,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Principal, Status> {
        if !self.is_enabled() {
            return Ok(Principal::anonymous());
        }
        match access {
            Some(Access::Public) => Ok(self
                .authenticate(authorization)
                .unwrap_or_else(|_| Principal::unidentified())),
            Some(Access::Scope(scope)) => {
                let principal = self.authenticate(authorization)?;
                if principal.has_scope(scope) {
                    Ok(principal)
                } else {
                    Err(permission_denied(scope))
                }
            }
            // A method missing from the access table: default deny. Only an admin gets through
            // (and learns it is unimplemented), so a handler added without a table row is never
            // an open door.
            None => {
                let principal = self.authenticate(authorization)?;
                if principal.has_scope(ADMIN_SCOPE) {
                    Ok(principal)
                } else {
                    Err(permission_denied(ADMIN_SCOPE))
                }
            }
        }
    }
}

fn unauthenticated(reason: &str, message: &str) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    )
}

fn permission_denied(scope: &str) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        format!("this call needs the scope {scope}"),
        ErrorDetails::with_error_info(
            "MISSING_SCOPE",
            ERROR_DOMAIN,
            HashMap::from([("scope".to_owned(), scope.to_owned())]),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TokenStore {
        TokenStore::new(&[
            "reader:touchpoints:read:r-secret".parse().expect("reader"),
            "root:admin:a:b:c".parse().expect("root"),
            "writer:touchpoints:read+touchpoints:write:w-secret"
                .parse()
                .expect("writer"),
        ])
    }

    fn bearer(token: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
    }

    fn reason(status: &Status) -> String {
        status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default()
    }

    #[test]
    fn token_config_parses_principal_scopes_and_token() {
        let config: TokenConfig = "bot:touchpoints:read+touchpoints:write:s3cr:et"
            .parse()
            .expect("parse");
        assert_eq!(config.principal, "bot");
        assert_eq!(config.scopes, ["touchpoints:read", "touchpoints:write"]);
        assert_eq!(config.token, "s3cr:et");

        let one: TokenConfig = "dashboard:touchpoints:read:read-secret"
            .parse()
            .expect("parse");
        assert_eq!(one.scopes, ["touchpoints:read"]);
        assert_eq!(one.token, "read-secret");

        let admin: TokenConfig = "ops:admin+journeys:write:a:b".parse().expect("parse");
        assert_eq!(admin.scopes, ["admin", "journeys:write"]);
        assert_eq!(admin.token, "a:b");

        let lookalike: TokenConfig = "ops:administration:read:tok".parse().expect("parse");
        assert_eq!(lookalike.scopes, ["administration:read"]);
        assert_eq!(lookalike.token, "tok");

        let no_scopes: TokenConfig = "bot::tok:en".parse().expect("parse");
        assert!(no_scopes.scopes.is_empty());
        assert_eq!(no_scopes.token, "tok:en");
    }

    #[test]
    fn token_config_refuses_bad_input_without_echoing_it() {
        for bad in [
            "",
            "bot",
            "bot:admin",
            ":admin:tok",
            "bot:admin:",
            "bot:touchpoints:read",
            "bot:touchpoints.read:tok",
            "bot:touchpoints:read+:tok",
            "bot:touchpoints::tok",
        ] {
            let err = bad.parse::<TokenConfig>().expect_err(bad);
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
        let config: TokenConfig = "bot:admin:very-secret".parse().expect("parse");
        assert!(!format!("{config:?}").contains("very-secret"));
    }

    #[test]
    fn lookup_accepts_each_configured_token_only() {
        let store = store();
        assert_eq!(
            store.lookup("r-secret").map(|p| p.name.as_str()),
            Some("reader")
        );
        assert_eq!(store.lookup("a:b:c").map(|p| p.name.as_str()), Some("root"));
        assert_eq!(
            store.lookup("w-secret").map(|p| p.name.as_str()),
            Some("writer")
        );
        assert!(store.lookup("w-secre").is_none());
        assert!(store.lookup("w-secret ").is_none());
        assert!(store.lookup("").is_none());
    }

    #[test]
    fn authenticate_reports_missing_and_invalid_tokens() {
        let store = store();
        let missing = store.authenticate(None).expect_err("missing");
        assert_eq!(missing.code(), Code::Unauthenticated);
        assert_eq!(reason(&missing), "MISSING_TOKEN");

        let basic = http::HeaderValue::from_static("Basic r-secret");
        assert_eq!(
            reason(&store.authenticate(Some(&basic)).expect_err("basic")),
            "MISSING_TOKEN"
        );

        let wrong = store
            .authenticate(Some(&bearer("nope")))
            .expect_err("wrong");
        assert_eq!(wrong.code(), Code::Unauthenticated);
        assert_eq!(reason(&wrong), "INVALID_TOKEN");

        let lower = http::HeaderValue::from_static("bearer r-secret");
        assert_eq!(
            store
                .authenticate(Some(&lower))
                .expect("lowercase scheme")
                .name,
            "reader"
        );
    }

    #[test]
    fn scopes_are_enforced_and_admin_grants_all() {
        let store = store();
        let needs_write = Some(Access::Scope("touchpoints:write"));

        let denied = store
            .authorize(needs_write, Some(&bearer("r-secret")))
            .expect_err("reader cannot write");
        assert_eq!(denied.code(), Code::PermissionDenied);
        let details = denied.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "MISSING_SCOPE");
        assert_eq!(
            info.metadata.get("scope").map(String::as_str),
            Some("touchpoints:write")
        );

        let writer = store
            .authorize(needs_write, Some(&bearer("w-secret")))
            .expect("writer");
        assert_eq!(writer.name, "writer");
        let root = store
            .authorize(needs_write, Some(&bearer("a:b:c")))
            .expect("admin");
        assert!(root.has_scope("anything.at.all"));

        let unauthenticated = store.authorize(needs_write, None).expect_err("no token");
        assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    }

    #[test]
    fn public_and_unknown_methods() {
        let store = store();
        let public = store.authorize(Some(Access::Public), None).expect("public");
        assert!(!public.has_scope("touchpoints:read"));
        assert_eq!(
            store.authorize(None, None).expect_err("unknown").code(),
            Code::Unauthenticated
        );
        // A method missing from the access table is default-deny: admins only.
        let denied = store
            .authorize(None, Some(&bearer("r-secret")))
            .expect_err("not in the table");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(reason(&denied), "MISSING_SCOPE");
        assert!(store.authorize(None, Some(&bearer("a:b:c"))).is_ok());
    }

    #[test]
    fn without_tokens_everyone_is_anonymous_admin() {
        let store = TokenStore::new(&[]);
        let principal = store
            .authorize(Some(Access::Scope("touchpoints:write")), None)
            .expect("open");
        assert_eq!(principal, Principal::anonymous());
        assert!(principal.has_scope("touchpoints:write"));
        let request = tonic::Request::new(());
        assert_eq!(super::principal(&request), Principal::anonymous());
    }
}
