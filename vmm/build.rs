//! Builds the guest runtime (`images/guest-rt`) and embeds it.
//!
//! The runtime is a `no_std` static executable for the host target, linked at
//! a fixed image base with no libc. It is built with a nested `cargo build`
//! in its own target directory so that this crate's build flags (coverage,
//! sanitizers, clippy's wrapper) never leak into guest code.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Link recipe for a static, non-PIE executable at the runtime's base.
fn guest_rustflags(image_base: &str) -> Vec<String> {
    [
        "-C",
        "relocation-model=static",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "link-arg=-nostartfiles",
        "-C",
        "link-arg=-nostdlib",
        "-C",
        "link-arg=-static",
        "-C",
        &format!("link-arg=-Wl,--image-base={image_base}"),
        "-C",
        "link-arg=-Wl,--build-id=none",
        // Segments start on their own pages, so each gets its own
        // permissions in the guest page tables.
        "-C",
        "link-arg=-Wl,-z,max-page-size=4096",
        "-C",
        "link-arg=-Wl,-z,separate-code",
        "-C",
        "link-arg=-Wl,--entry=bpfvisor_dispatch_entry",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guest_dir = manifest_dir.join("../images/guest-rt");
    let shm_dir = manifest_dir.join("../shm");
    for path in [
        guest_dir.join("src"),
        guest_dir.join("Cargo.toml"),
        shm_dir.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out_dir.join("guest-rt-target");
    // Keep in sync with shm::layout::RUNTIME_START (checked at load time).
    let flags = guest_rustflags("0x200000").join("\x1f");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags);
    // Drop everything of the outer build that would change how the guest is
    // compiled.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "RUSTDOCFLAGS"
            )
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the guest runtime");
    assert!(status.success(), "building the guest runtime failed");

    let elf = target_dir.join("release/guest-rt");
    std::fs::copy(&elf, out_dir.join("guest-rt.elf")).expect("copy guest runtime");
}
