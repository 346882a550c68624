//! Helpers shared by the end-to-end test crates (each one that needs them says `mod common;`).

use std::process::Command;

/// Whether util-linux `script` (runs a command on a pseudo-terminal) is installed. Under CI it must
/// be: its absence fails the test instead of skipping it.
pub fn have_script() -> bool {
    let ok = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("`script` (util-linux) is required under CI");
        }
        eprintln!("skipping: `script` is not installed");
    }
    ok
}
