//! libFuzzer on the input parser: every input, read as CSV and as JSON lines, must keep the
//! promises in `tests/parser_props` (the same checks as the stable pass, `tests/parser_fuzz.rs`).
//!
//! ```text
//! cd crates/invbot && cargo +nightly fuzz run parser fuzz/corpus-work fuzz/corpus/parser -- \
//!     -dict=fuzz/parser.dict -max_len=16384 -rss_limit_mb=256 -malloc_limit_mb=64 -runs=10000000
//! ```
#![no_main]

use invbot::input::Format;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/parser_props/mod.rs"]
mod parser_props;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Csv, Format::JsonLines] {
        let _ = parser_props::check_format(data, format);
    }
});
