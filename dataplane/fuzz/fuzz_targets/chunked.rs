//! The chunked scanner must never panic, and must find the same body end however the input is
//! split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::proxy::http1::chunked::ChunkedScanner;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let whole = {
        let mut s = ChunkedScanner::new(1024);
        s.scan(input).map(|n| (n, s.is_done(), s.payload))
    };
    let mut s = ChunkedScanner::new(1024);
    let step = usize::from(split).max(1);
    let mut used = 0;
    let mut result = Ok(());
    for part in input.chunks(step) {
        match s.scan(part) {
            Ok(n) => {
                used += n;
                if s.is_done() {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    match (whole, result) {
        (Ok((n, done, payload)), Ok(())) => {
            assert_eq!(done, s.is_done());
            if done {
                assert_eq!(n, used);
                assert_eq!(payload, s.payload);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("split changed the outcome: {a:?} vs {b:?}"),
    }
});
