//! `cargo bench -p bench`: the whole side-by-side suite with the default
//! options, as `bpfvisor bench` runs it; results in target/bench/.

use bench::runner::Options;
use bench::session::{self, Selection};
use std::path::Path;

fn main() {
    let report = session::run(&Selection::default(), &Options::default(), &mut |_| {});
    print!("{}", report.table());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    match session::save(&report, &out) {
        Ok((json, svg)) => println!("\nwrote {} and {}", json.display(), svg.display()),
        Err(e) => eprintln!("writing results to {}: {e}", out.display()),
    }
    if report.has_failures() {
        std::process::exit(1);
    }
}
