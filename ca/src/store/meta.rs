//! `ca.meta`, the store's commit point: a small line-oriented text file naming the trust
//! domain, the CA files in force (the active root and intermediate and, during a two-phase
//! root rotation, the pending ones with their activation time) and, per root, the latest
//! expiry of the leaves it vouches for. The parser is strict (unknown keys, stray words and file names we would not have
//! written are refused), so a damaged or foreign file never passes for a store.

use std::collections::BTreeMap;

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
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) trust_domain: String,
    /// The issuing pair.
    pub(super) active: PairFiles,
    /// The pair of a rotation under way (trusted, not issuing yet).
    pub(super) pending: Option<PendingMeta>,
    /// fingerprint -> latest leaf expiry (unix seconds).
    pub(super) roots: Vec<(String, Option<i64>)>,
}

/// The files of a root and its intermediate.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PairFiles {
    pub(super) root_cert: String,
    pub(super) root_key: String,
    pub(super) intermediate_cert: String,
    pub(super) intermediate_key: String,
}

/// The pending pair and its activation time (unix seconds). Written as `pending_*` lines,
/// all five or none; a store without them has no rotation under way (so stores written
/// before two-phase rotation load unchanged).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PendingMeta {
    pub(super) files: PairFiles,
    pub(super) activate_at: i64,
}

/// The keys of a pair's files, after the `pending_` prefix if any.
const PAIR_KEYS: [&str; 4] = [
    "root_cert",
    "root_key",
    "intermediate_cert",
    "intermediate_key",
];
const PENDING: &str = "pending_";
const ACTIVATE_AT: &str = "pending_activate_at";

impl PairFiles {
    fn names(&self) -> [&str; 4] {
        [
            &self.root_cert,
            &self.root_key,
            &self.intermediate_cert,
            &self.intermediate_key,
        ]
    }

    fn render(&self, prefix: &str, out: &mut String) {
        for (key, name) in PAIR_KEYS.iter().zip(self.names()) {
            out.push_str(&format!("{prefix}{key} {name}\n"));
        }
    }

    /// Takes the four keys (after `prefix`) out of `single`: None when none is there.
    fn take(
        single: &mut BTreeMap<&str, &str>,
        prefix: &str,
    ) -> std::result::Result<Option<Self>, String> {
        let mut found = PAIR_KEYS.map(|k| single.remove(format!("{prefix}{k}").as_str()));
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut next = |i: usize| {
            found[i]
                .take()
                .map(str::to_owned)
                .ok_or_else(|| format!("{prefix}{} missing", PAIR_KEYS[i]))
        };
        Ok(Some(PairFiles {
            root_cert: next(0)?,
            root_key: next(1)?,
            intermediate_cert: next(2)?,
            intermediate_key: next(3)?,
        }))
    }
}

impl Meta {
    /// Every CA file this metadata names (the store keeps these and deletes other ones).
    pub(super) fn file_names(&self) -> Vec<&str> {
        let mut names = self.active.names().to_vec();
        if let Some(p) = &self.pending {
            names.extend(p.files.names());
        }
        names
    }

    pub(super) fn render(&self) -> String {
        let mut s = format!("{MAGIC}\ntrust_domain {}\n", self.trust_domain);
        self.active.render("", &mut s);
        if let Some(p) = &self.pending {
            p.files.render(PENDING, &mut s);
            s.push_str(&format!("{ACTIVATE_AT} {}\n", p.activate_at));
        }
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
        let mut single: BTreeMap<&str, &str> = BTreeMap::new();
        let mut roots = Vec::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                return Err(format!("bad line {line:?}"));
            };
            if key == "root" {
                let exp = match words.next() {
                    Some("-") => None,
                    Some(n) => Some(n.parse::<i64>().map_err(|_| format!("bad expiry {n:?}"))?),
                    None => return Err(format!("bad line {line:?}")),
                };
                roots.push((value.to_owned(), exp));
            } else {
                let pair_key = key.strip_prefix(PENDING).unwrap_or(key);
                if PAIR_KEYS.contains(&pair_key) {
                    if !is_our_file_name(value) {
                        return Err(format!("bad file name {value:?} for {key}"));
                    }
                } else if key != "trust_domain" && key != ACTIVATE_AT {
                    return Err(format!("unknown key {key:?}"));
                }
                if single.insert(key, value).is_some() {
                    return Err(format!("{key} appears twice"));
                }
            }
            if words.next().is_some() {
                return Err(format!("trailing words in {line:?}"));
            }
        }
        let trust_domain = single
            .remove("trust_domain")
            .ok_or("trust_domain missing")?
            .to_owned();
        let active = PairFiles::take(&mut single, "")?.ok_or("root_cert missing")?;
        let pending = match (
            PairFiles::take(&mut single, PENDING)?,
            single.remove(ACTIVATE_AT),
        ) {
            (Some(files), Some(at)) => Some(PendingMeta {
                files,
                activate_at: at
                    .parse()
                    .map_err(|_| format!("bad {ACTIVATE_AT} {at:?}"))?,
            }),
            (None, None) => None,
            (Some(_), None) => return Err(format!("{ACTIVATE_AT} missing")),
            (None, Some(_)) => return Err(format!("{ACTIVATE_AT} without a pending root")),
        };
        Ok(Meta {
            trust_domain,
            active,
            pending,
            roots,
        })
    }
}
