//! A frame config (TOML): parsed, then its preprocessing settings checked; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamscore::frames::{FrameConfig, Preprocess};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = toml::from_str::<FrameConfig>(text) else { return };
    for (w, h, c) in [(1, 1, 1), (224, 224, 3), (u32::MAX, 2, 3)] {
        let p = Preprocess { width: w, height: h, channels: c, mean: config.mean, std: config.std };
        let _ = p.check();
    }
    if let Some(spec) = &config.backend {
        let _ = spec.parse::<streamscore::BackendSpec>();
    }
});
