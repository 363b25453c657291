//! Fuzzes the SPIFFE ID, trust domain and ID pattern parsers: no input may panic, and every
//! accepted input must print back to exactly itself and re-parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ca::{IdPattern, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<SpiffeId>() {
        let printed = id.to_string();
        assert_eq!(printed, s, "Display must round-trip");
        assert!(printed.len() <= 2048);
        assert_eq!(printed.parse::<SpiffeId>().ok(), Some(id.clone()));
        assert!(id.trust_domain().as_str().parse::<TrustDomain>().is_ok());
        // An exact pattern of the ID matches it.
        let exact: IdPattern = printed.parse().expect("an ID is a valid exact pattern");
        assert!(exact.matches(&id));
    }
    if let Ok(td) = s.parse::<TrustDomain>() {
        assert_eq!(td.to_string(), s);
        assert!(td.id().to_string().parse::<SpiffeId>().is_ok());
    }
    if let Ok(p) = s.parse::<IdPattern>() {
        assert_eq!(p.to_string(), s, "pattern Display must round-trip");
        assert_eq!(p.to_string().parse::<IdPattern>().ok(), Some(p));
    }
});
