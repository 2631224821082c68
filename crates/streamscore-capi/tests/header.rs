//! The committed header is what cbindgen makes of the code: a change to the ABI that is not
//! regenerated fails here (and so in CI). `STREAMSCORE_BLESS=1` writes it instead.

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = dir.join("include/streamscore.h");
    if std::env::var_os("STREAMSCORE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the code; regenerate it with \
         STREAMSCORE_BLESS=1 cargo test -p streamscore-capi --test header",
        path.display()
    );
}
