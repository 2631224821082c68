//! The WGSL sources, embedded at compile time. This is the only module that names a shader
//! file. Each is compiled after its prelude from [`abi`](super::abi) (the constants and structs
//! Rust shares with it); a unit test parses and validates every prelude + file with naga and
//! checks the structs' layout against Rust's, so a WGSL error or a drifted contract fails
//! `cargo test` on any machine, GPU or not.

use std::sync::OnceLock;

pub(crate) use super::abi::Shader;

impl Shader {
    /// The shader file as committed.
    fn file(self) -> &'static str {
        match self {
            Shader::Gbdt => include_str!("../../../shaders/gbdt.wgsl"),
            Shader::Dense => include_str!("../../../shaders/dense.wgsl"),
            Shader::Frames => include_str!("../../../shaders/frames.wgsl"),
        }
    }

    /// The WGSL source compiled: the prelude, then the file (built once per process).
    pub fn source(self) -> &'static str {
        static SOURCES: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        SOURCES[self as usize].get_or_init(|| super::abi::prelude(self) + self.file())
    }

    /// The file name, for labels and errors.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Gbdt => "gbdt.wgsl",
            Shader::Dense => "dense.wgsl",
            Shader::Frames => "frames.wgsl",
        }
    }

    /// Compiles the shader on `device`.
    pub fn module(self, device: &wgpu::Device) -> wgpu::ShaderModule {
        device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(self.name()),
            source: wgpu::ShaderSource::Wgsl(self.source().into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Shader;
    use crate::backend::gpu::abi;

    fn module(shader: Shader) -> naga::Module {
        naga::front::wgsl::parse_str(shader.source())
            .unwrap_or_else(|e| panic!("{}: {}", shader.name(), e.emit_to_string(shader.source())))
    }

    #[test]
    fn every_shader_parses_and_validates() {
        for shader in Shader::ALL {
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module(shader))
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name()));
        }
    }

    /// Every shared struct has the size and member offsets in WGSL (as naga lays it out) that
    /// it has in Rust, and no shader declares a contract name itself.
    #[test]
    fn the_contract_has_one_layout() {
        for (shader, name, size, offsets) in abi::layout::all() {
            let m = module(shader);
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(m.to_ctx()).unwrap();
            let (handle, ty) = m
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: no struct {name}", shader.name()));
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{name} is not a struct");
            };
            assert_eq!(*span as usize, size, "{}: size of {name}", shader.name());
            assert_eq!(layouter[handle].size as usize, size);
            let wgsl: Vec<(&str, usize)> = members
                .iter()
                .map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize))
                .collect();
            assert_eq!(wgsl, offsets, "{}: members of {name}", shader.name());
        }
        for shader in Shader::ALL {
            for (name, _) in abi::constants(shader) {
                let declared = format!("const {name}:");
                assert!(
                    !shader.file().contains(&declared),
                    "{} declares {name} itself",
                    shader.name()
                );
            }
        }
    }

    /// The prelude's constants reach the compiled module with Rust's values.
    #[test]
    fn constants_have_rust_values() {
        for shader in Shader::ALL {
            let m = module(shader);
            for (name, value) in abi::constants(shader) {
                let (_, c) = m
                    .constants
                    .iter()
                    .find(|(_, c)| c.name.as_deref() == Some(name))
                    .unwrap_or_else(|| panic!("{}: no constant {name}", shader.name()));
                let got = match m.global_expressions[c.init] {
                    naga::Expression::Literal(naga::Literal::U32(v)) => abi::Value::U32(v),
                    naga::Expression::Literal(naga::Literal::F32(v)) => abi::Value::F32(v),
                    ref e => panic!("{}: {name} = {e:?}", shader.name()),
                };
                assert_eq!(got, value, "{}: {name}", shader.name());
            }
        }
    }
}
