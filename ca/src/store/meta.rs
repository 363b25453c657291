//! `ca.meta`, the store's commit point: a small line-oriented text file naming the trust
//! domain, the CA files in force and, per root, the latest expiry of the leaves it vouches
//! for. The parser is strict (unknown keys, stray words and file names we would not have
//! written are refused), so a damaged or foreign file never passes for a store.

use super::META;

const MAGIC: &str = "shoal-ca-store v1";

/// A store file name we wrote ourselves: `root-`/`intermediate-`, 16 hex digits, `.pem`/`.key`.
pub(super) fn is_our_file_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("root-")
        .or_else(|| name.strip_prefix("intermediate-"))
    else {
        return false;
    };
    let Some(hex) = rest
        .strip_suffix(".pem")
        .or_else(|| rest.strip_suffix(".key"))
    else {
        return false;
    };
    hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The parsed `ca.meta`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) trust_domain: String,
    pub(super) root_cert: String,
    pub(super) root_key: String,
    pub(super) intermediate_cert: String,
    pub(super) intermediate_key: String,
    /// fingerprint -> latest leaf expiry (unix seconds).
    pub(super) roots: Vec<(String, Option<i64>)>,
}

impl Meta {
    pub(super) fn render(&self) -> String {
        let mut s = format!(
            "{MAGIC}\ntrust_domain {}\nroot_cert {}\nroot_key {}\nintermediate_cert {}\nintermediate_key {}\n",
            self.trust_domain,
            self.root_cert,
            self.root_key,
            self.intermediate_cert,
            self.intermediate_key
        );
        for (fp, exp) in &self.roots {
            let exp = exp.map_or_else(|| "-".to_owned(), |e| e.to_string());
            s.push_str(&format!("root {fp} {exp}\n"));
        }
        s
    }

    pub(super) fn parse(text: &str) -> std::result::Result<Meta, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("{META} does not start with {MAGIC:?}"));
        }
        let mut m = Meta::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                return Err(format!("bad line {line:?}"));
            };
            let file_slot = match key {
                "trust_domain" => Some(&mut m.trust_domain),
                "root_cert" => Some(&mut m.root_cert),
                "root_key" => Some(&mut m.root_key),
                "intermediate_cert" => Some(&mut m.intermediate_cert),
                "intermediate_key" => Some(&mut m.intermediate_key),
                "root" => None,
                other => return Err(format!("unknown key {other:?}")),
            };
            if let Some(slot) = file_slot {
                if key != "trust_domain" && !is_our_file_name(value) {
                    return Err(format!("bad file name {value:?} for {key}"));
                }
                *slot = value.to_owned();
            } else {
                let exp = match words.next() {
                    Some("-") => None,
                    Some(n) => Some(n.parse::<i64>().map_err(|_| format!("bad expiry {n:?}"))?),
                    None => return Err(format!("bad line {line:?}")),
                };
                m.roots.push((value.to_owned(), exp));
            }
            if words.next().is_some() {
                return Err(format!("trailing words in {line:?}"));
            }
        }
        for (key, v) in [
            ("trust_domain", &m.trust_domain),
            ("root_cert", &m.root_cert),
            ("root_key", &m.root_key),
            ("intermediate_cert", &m.intermediate_cert),
            ("intermediate_key", &m.intermediate_key),
        ] {
            if v.is_empty() {
                return Err(format!("{key} missing"));
            }
        }
        Ok(m)
    }
}
