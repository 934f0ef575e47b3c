//! The topology file as `grelab validate` and `grelab plan` read it: no
//! text makes parse, validate or plan panic; every error renders, names the
//! file and is bad input (exit 2).
#![no_main]

use grelab::{error, plan, topology, validate};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // read_file refuses what is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let topo = match topology::parse(text, FILE) {
        Ok(t) => t,
        Err(e) => {
            let shown = format!("{e:#}");
            assert!(shown.starts_with(FILE), "{shown}");
            assert!(shown.contains("error: "), "{shown}");
            assert_eq!(error::exit_code(&e), 2, "{shown}");
            return;
        }
    };
    if let Err(diags) = validate::validate(&topo) {
        assert!(!diags.is_empty());
        for d in &diags {
            assert!(!d.message.is_empty(), "{d:?}");
        }
        let shown = validate::render(FILE, &diags);
        assert!(shown.ends_with(&format!("in {FILE}")), "{shown}");
        let e = error::bad_input(shown);
        assert_eq!(error::exit_code(&e), 2);
        return;
    }
    let plan = plan::build(&topo, None);
    assert!(!plan.script().is_empty());
});
