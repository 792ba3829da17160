//! Records the git revision and branch the gateway is built from, for the `revision` and
//! `branch` labels of `statsd_exporter_build_info` (statsd_exporter takes them from its
//! build's ldflags). Outside a git checkout, or without git, both read `unknown`; the
//! environment variables `STATSGATE_GIT_REVISION` and `STATSGATE_GIT_BRANCH`, when set and
//! not empty, win (for builds from a source tarball or a Docker context without `.git`).
//! The compiler's version fills `goversion`, in Go's shape (`rustc1.95.0` as `go1.22.5`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a label reads when the build cannot tell.
const UNKNOWN: &str = "unknown";

/// `git <args>` in the package directory: its trimmed output, or `None` when git is
/// missing, fails (not a checkout, unborn branch) or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The value of an override variable, when set and not empty.
fn overridden(var: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={var}");
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// A path git printed, relative to the package directory unless absolute.
fn in_package(path: String) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn main() {
    let revision = overridden("STATSGATE_GIT_REVISION").or_else(|| git(&["rev-parse", "HEAD"]));
    // `HEAD` when detached, as `git rev-parse --abbrev-ref` says.
    let branch =
        overridden("STATSGATE_GIT_BRANCH").or_else(|| git(&["rev-parse", "--abbrev-ref", "HEAD"]));
    println!(
        "cargo:rustc-env=STATSGATE_GIT_REVISION={}",
        revision.as_deref().unwrap_or(UNKNOWN)
    );
    println!(
        "cargo:rustc-env=STATSGATE_GIT_BRANCH={}",
        branch.as_deref().unwrap_or(UNKNOWN)
    );

    // Cargo hands build scripts the compiler it builds with in `RUSTC`.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let compiler = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(|v| format!("rustc{v}")));
    println!(
        "cargo:rustc-env=STATSGATE_RUSTC_VERSION={}",
        compiler.as_deref().unwrap_or(UNKNOWN)
    );

    // Run again only when HEAD moves: its file (a worktree has its own), the ref it points
    // to (which lives in the common git directory), and packed-refs, where a ref may be
    // instead. Only existing paths are named: cargo reruns on every build for a missing one.
    // A ref that is only packed gets its loose file at the next commit, which changes the
    // directory that file appears in.
    let git_path = |name: &str| git(&["rev-parse", "--git-path", name]).map(in_package);
    let mut watched: Vec<PathBuf> = git_path("HEAD").into_iter().collect();
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(loose) = git_path(&reference) {
            match loose.parent() {
                Some(dir) if !loose.exists() => watched.push(dir.to_path_buf()),
                _ => watched.push(loose),
            }
        }
        watched.extend(git_path("packed-refs"));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Without a checkout nothing above is watched, and cargo would rerun this script on any
    // change in the package; this file is all it depends on then.
    println!("cargo:rerun-if-changed=build.rs");
}
