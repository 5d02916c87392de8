//! Device selection. CUDA in the PyPI libtorch is silently off unless `libtorch_cuda.so` has been
//! loaded into the process, so asking for a GPU first dlopens it (once) and then checks
//! availability, turning "silently on CPU" into a clear error.

use crate::error::{PolicyError, Result};
use std::sync::OnceLock;

static CUDA_LIB: OnceLock<std::result::Result<(), String>> = OnceLock::new();

fn load_cuda_library() -> std::result::Result<(), String> {
    CUDA_LIB
        .get_or_init(|| {
            let mut errors = Vec::new();
            for name in ["libtorch_cuda.so"] {
                // SAFETY: loading libtorch_cuda runs its static initialisers, which register the
                // CUDA backend with the already-loaded libtorch_cpu of the same build; the
                // library is leaked on purpose so it stays loaded for the process lifetime.
                match unsafe { libloading::Library::new(name) } {
                    Ok(lib) => {
                        std::mem::forget(lib);
                        return Ok(());
                    }
                    Err(e) => errors.push(format!("{name}: {e}")),
                }
            }
            Err(errors.join("; "))
        })
        .clone()
}

/// Parses `cpu`, `cuda` or `cuda:N` into a tch device, loading the CUDA backend when needed.
pub fn parse_device(spec: &str) -> Result<tch::Device> {
    let spec = spec.trim();
    if spec == "cpu" {
        return Ok(tch::Device::Cpu);
    }
    let index = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(i) => i,
            None => return Err(PolicyError::UnknownDevice(spec.to_string())),
        },
        None => return Err(PolicyError::UnknownDevice(spec.to_string())),
    };
    load_cuda_library()
        .map_err(|msg| PolicyError::DeviceUnavailable { device: spec.into(), msg })?;
    let count = tch::Cuda::device_count();
    if count <= index as i64 {
        return Err(PolicyError::DeviceUnavailable {
            device: spec.into(),
            msg: format!("{count} CUDA device(s) visible"),
        });
    }
    Ok(tch::Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_unknown_is_an_error() {
        assert_eq!(parse_device("cpu").unwrap(), tch::Device::Cpu);
        let err = parse_device("tpu:0").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu:0`"), "{err}");
        assert!(parse_device("cuda:x").is_err());
    }
}
