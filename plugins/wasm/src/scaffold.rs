//! `spillway plugin new`: a plugin crate made from the SDK's
//! `examples/service_name`, a real crate that is built and tested with the
//! SDK's other examples, embedded here file by file.

use std::path::Path;

const CARGO_TOML: &str = include_str!("../../../sdk/examples/service_name/Cargo.toml");
const LIB_RS: &str = include_str!("../../../sdk/examples/service_name/src/lib.rs");
const BUILD_OFFLINE: &str = include_str!("../../../sdk/examples/service_name/build-offline.sh");
const SAMPLE: &str = include_str!("../../../sdk/examples/service_name/sample.jsonl");
const README: &str = include_str!("../../../sdk/examples/service_name/README.md");
const TEMPLATE_NAME: &str = "service_name";
const TEMPLATE_SDK: &str = "spillway-sdk = { path = \"../..\" }";
/// In the SDK's workspace the example inherits the workspace's profile; on
/// its own the crate needs it.
const RELEASE_PROFILE: &str =
    "\n[profile.release]\nopt-level = 3\nlto = true\ncodegen-units = 1\npanic = \"abort\"\n";

/// Whether `name` can name a crate: letters, digits, `_`, `-`, starting
/// with a letter.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The files of a plugin crate `name` that depends on the SDK as
/// `sdk_dependency` (a `Cargo.toml` line).
pub fn files(name: &str, sdk_dependency: &str) -> Vec<(&'static str, String)> {
    let lib = name.replace('-', "_");
    vec![
        (
            "Cargo.toml",
            CARGO_TOML
                .replace(&format!("name = \"{TEMPLATE_NAME}\""), &format!("name = \"{name}\""))
                .replace(TEMPLATE_SDK, sdk_dependency)
                + RELEASE_PROFILE,
        ),
        ("src/lib.rs", LIB_RS.to_string()),
        ("build-offline.sh", BUILD_OFFLINE.to_string()),
        ("sample.jsonl", SAMPLE.to_string()),
        (".gitignore", "target/\n".to_string()),
        (
            "README.md",
            README
                .replacen(&format!("# {TEMPLATE_NAME}"), &format!("# {name}"), 1)
                .replace(TEMPLATE_NAME, &lib),
        ),
    ]
}

/// Writes the crate into `root`, which must not exist.
pub fn create(name: &str, root: &Path, sdk_dependency: &str) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "`{name}` is not a crate name (letters, digits, `_`, `-`; starting with a letter)"
        ));
    }
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    for (rel, text) in files(name, sdk_dependency) {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let script = root.join("build-offline.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", script.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_is_the_template_renamed() {
        let f = files("my-plugin", "spillway-sdk = \"0.1\"");
        let cargo = &f.iter().find(|(p, _)| *p == "Cargo.toml").unwrap().1;
        assert!(
            cargo.contains("name = \"my-plugin\"") && cargo.contains("spillway-sdk = \"0.1\""),
            "{cargo}"
        );
        assert!(!cargo.contains("path = \"../..\"") && cargo.contains("lto = true"));
        let readme = &f.iter().find(|(p, _)| *p == "README.md").unwrap().1;
        assert!(readme.starts_with("# my-plugin") && readme.contains("my_plugin.wasm"), "{readme}");
        assert!(!valid_name("9lives") && !valid_name("a b") && valid_name("a-b_c"));
    }
}
