//! The WGSL sources, embedded at compile time. This is the only module that names a shader
//! file; a unit test parses and validates each one with naga, so a WGSL error fails
//! `cargo test` on any machine, GPU or not.

/// A shader file from `shaders/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shader {
    /// Tree ensembles: entry points `rows` and `tiles`.
    Gbdt,
    /// Dense nets: entry points `layer` and `softmax`.
    Dense,
    /// Video frames: entry points `preprocess`, `luma` and `motion_score`.
    Frames,
}

impl Shader {
    /// Every shader, for the validation test.
    #[cfg(test)]
    pub const ALL: [Shader; 3] = [Shader::Gbdt, Shader::Dense, Shader::Frames];

    /// The WGSL source.
    pub fn source(self) -> &'static str {
        match self {
            Shader::Gbdt => include_str!("../../../shaders/gbdt.wgsl"),
            Shader::Dense => include_str!("../../../shaders/dense.wgsl"),
            Shader::Frames => include_str!("../../../shaders/frames.wgsl"),
        }
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

    #[test]
    fn every_shader_parses_and_validates() {
        for shader in Shader::ALL {
            let module = naga::front::wgsl::parse_str(shader.source()).unwrap_or_else(|e| {
                panic!("{}: {}", shader.name(), e.emit_to_string(shader.source()))
            });
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name()));
        }
    }
}
