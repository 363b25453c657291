//! Any YAML either fails to parse, is rejected with field errors, or compiles: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::snapshot::compile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = ConfigSpec::from_yaml(text) {
        if let Err(errors) = compile(&spec, None) {
            assert!(!errors.is_empty());
        }
    }
});
