//! Generates the protobuf types from `proto/` with protox, a protobuf compiler in Rust, so that
//! a fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    revision();
    let descriptors = protox::compile(["consent.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}

/// The git revision, for `consent_enforcer_build_info`: from `CONSENT_ENFORCER_REVISION` when
/// set (an image build without `.git`), else `git rev-parse`, else none ("unknown").
fn revision() {
    println!("cargo:rerun-if-env-changed=CONSENT_ENFORCER_REVISION");
    let revision = std::env::var("CONSENT_ENFORCER_REVISION").ok().or_else(|| {
        let output = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(revision) = revision.filter(|r| !r.is_empty()) {
        println!("cargo:rustc-env=CONSENT_ENFORCER_REVISION={revision}");
    }
}
