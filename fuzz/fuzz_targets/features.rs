//! A feature spec (TOML, before the first NUL byte) and an event stream (the bytes after it:
//! 16 bytes an event, key, time and values) through the stage; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamscore::features::{Features, Spec};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let Ok(spec) = Spec::from_toml(text) else { return };
    let width = spec.fields.len();
    let events = data.get(split + 1..).unwrap_or(&[]);
    let (mut rows, mut keys, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for e in events.chunks_exact(16).take(4096) {
        keys.push(u64::from(e[0] % 8));
        times.push(i64::from_le_bytes(e[1..9].try_into().expect("8 bytes")));
        for f in 0..width {
            let b = e[9 + f % 7];
            rows.push(if b == 255 { f32::NAN } else { f32::from(b) - 100.0 });
        }
    }
    let mut stage = Features::new(spec);
    let _ = stage.transform_rows(&rows, &keys, &times);
});
