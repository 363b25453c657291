//! Bootstrap join tokens: the file `admin.join_tokens` names, read at start.
//!
//! Format: one token per line, `TOKEN PATTERN [PATTERN...]`, where each PATTERN is a SPIFFE ID
//! pattern (`spiffe://td/path` or `spiffe://td/prefix/*`) the token's holder may request;
//! blank lines and `#` comments are ignored. Tokens are at least [`MIN_TOKEN_LEN`] characters
//! with at least [`MIN_DISTINCT`] distinct ones; a weak, duplicate or pattern-less token is an
//! error naming its line (never its text).
//!
//! Only SHA-256 digests of the tokens are kept. A presented token is digested and compared
//! with every stored digest in constant time ([`ct_eq`]): the time taken does not depend on
//! how much of a token matched, nor on which token did.

use std::path::Path;

use ring::digest::{SHA256, digest};
use shoal_ca::IdPattern;

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 32;
/// The fewest distinct characters a token must use (`aaaa...` is not a secret).
pub const MIN_DISTINCT: usize = 8;

/// A problem in a token file: its line (1-based; 0 = the file itself) and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {reason}", if *line > 0 { format!(" line {line}") } else { String::new() })]
pub struct TokenFileError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

/// One token: its digest, the patterns it may request, and its line (to name it in logs).
struct JoinToken {
    digest: [u8; 32],
    allowed: Vec<IdPattern>,
    line: usize,
}

/// What a matching token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The IDs the holder may get signed.
    pub allowed: Vec<IdPattern>,
    /// The token's line in the file (names it in logs without revealing it).
    pub line: usize,
}

/// The tokens of a file (see the module docs). Empty: no token is accepted.
#[derive(Default)]
pub struct JoinTokens {
    tokens: Vec<JoinToken>,
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the digests: a digest of a weak secret is as good as the secret.
        write!(f, "JoinTokens({} tokens)", self.tokens.len())
    }
}

impl JoinTokens {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError {
            path: path.display().to_string(),
            line: 0,
            reason: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a token file's text; `name` is the path used in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, TokenFileError> {
        let err = |line: usize, reason: String| TokenFileError {
            path: name.to_string(),
            line,
            reason,
        };
        let mut tokens: Vec<JoinToken> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or_default();
            let mut words = content.split_whitespace();
            let Some(token) = words.next() else { continue };
            check_strength(token).map_err(|reason| err(line, reason))?;
            let mut allowed = Vec::new();
            for p in words {
                let pattern = p
                    .parse::<IdPattern>()
                    .map_err(|e| err(line, format!("{p:?} is not a SPIFFE ID pattern: {e}")))?;
                allowed.push(pattern);
            }
            if allowed.is_empty() {
                return Err(err(
                    line,
                    "the token needs at least one SPIFFE ID pattern it may request".into(),
                ));
            }
            let d = sha256(token.as_bytes());
            if let Some(first) = tokens.iter().find(|t| ct_eq(&t.digest, &d)) {
                return Err(err(line, format!("the same token as line {}", first.line)));
            }
            tokens.push(JoinToken {
                digest: d,
                allowed,
                line,
            });
        }
        Ok(Self { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The grant of the token equal to `presented`, if any. Every stored digest is compared,
    /// each in constant time.
    pub fn find(&self, presented: &str) -> Option<TokenGrant> {
        let d = sha256(presented.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            let eq = ct_eq(&t.digest, &d);
            if eq && found.is_none() {
                found = Some(t);
            }
        }
        found.map(|t| TokenGrant {
            allowed: t.allowed.clone(),
            line: t.line,
        })
    }
}

fn check_strength(token: &str) -> Result<(), String> {
    let len = token.chars().count();
    if len < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is too short ({len} characters; at least {MIN_TOKEN_LEN} are required)"
        ));
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Err(format!(
            "the token is too weak ({} distinct characters; at least {MIN_DISTINCT} are required)",
            distinct.len()
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the token must be printable ASCII (it travels in a header)".into());
    }
    Ok(())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

/// Constant-time equality of two digests: every byte is looked at, whatever differs.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// Reads the client side's token file (`ca.token_file`): its first line that is neither
/// blank nor a `#` comment, trimmed.
pub fn read_client_token(path: &Path) -> Result<String, TokenFileError> {
    let err = |line, reason: String| TokenFileError {
        path: path.display().to_string(),
        line,
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(0, e.to_string()))?;
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err(err(
                i + 1,
                "the token must be printable ASCII without spaces".into(),
            ));
        }
        return Ok(t.to_string());
    }
    Err(err(0, "no token in the file".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gH";
    const T2: &str = "Zq8Wm3Kx9Lp2Rt7Vn4Bc6Yd1Hs5Jf0Ga-extra";

    fn pat(s: &str) -> IdPattern {
        s.parse().unwrap()
    }

    #[test]
    fn parses_tokens_with_their_patterns() {
        let text = format!(
            "# bootstrap tokens\n\n{T1} spiffe://example.org/ns/web/sa/*  # web proxies\n\
             {T2} spiffe://example.org/edge spiffe://example.org/ns/db/sa/*\n"
        );
        let tokens = JoinTokens::parse("t", &text).unwrap();
        assert_eq!(tokens.len(), 2);
        let g = tokens.find(T1).unwrap();
        assert_eq!(g.line, 3);
        assert_eq!(g.allowed, [pat("spiffe://example.org/ns/web/sa/*")]);
        let g = tokens.find(T2).unwrap();
        assert_eq!(g.line, 4);
        assert_eq!(g.allowed.len(), 2);
        // Not a token: near misses, prefixes, extensions, the empty string.
        for wrong in [
            "",
            &T1[..31],
            &format!("{T1}x"),
            &T1.to_uppercase(),
            "k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gI",
        ] {
            assert_eq!(tokens.find(wrong), None, "{wrong:?}");
        }
        assert!(JoinTokens::parse("t", "# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn weak_or_malformed_tokens_name_their_line_not_the_token() {
        let cases: &[(&str, usize, &str)] = &[
            ("short spiffe://example.org/a", 1, "too short"),
            (
                &format!("\n{} spiffe://example.org/a", "ab".repeat(20)),
                2,
                "too weak",
            ),
            (&format!("{T1}\n"), 1, "at least one SPIFFE ID pattern"),
            (
                &format!("{T1} https://example.org/a"),
                1,
                "not a SPIFFE ID pattern",
            ),
            (
                &format!("{T1} spiffe://example.org/a\n#\n{T1} spiffe://example.org/b"),
                3,
                "the same token as line 1",
            ),
        ];
        for (text, line, needle) in cases {
            let e = JoinTokens::parse("tokens.txt", text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(
                msg.starts_with(&format!("tokens.txt line {line}: ")),
                "{msg}"
            );
            assert!(
                !msg.contains(T1) && !msg.contains("abab"),
                "leaks the token: {msg}"
            );
        }
    }

    #[test]
    fn constant_time_compare_looks_at_every_byte() {
        let a = sha256(b"one");
        assert!(ct_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!ct_eq(&a, &b), "byte {i}");
            b[i] ^= 0x81;
            assert!(!ct_eq(&a, &b), "byte {i}");
        }
        assert!(!ct_eq(&a, &sha256(b"two")));
    }

    #[test]
    fn client_token_file_is_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, format!("# for edge-1\n\n  {T1}  \nignored\n")).unwrap();
        assert_eq!(read_client_token(&p).unwrap(), T1);
        std::fs::write(&p, "# empty\n").unwrap();
        assert!(
            read_client_token(&p)
                .unwrap_err()
                .to_string()
                .contains("no token")
        );
        assert!(read_client_token(&dir.path().join("missing")).is_err());
    }
}
