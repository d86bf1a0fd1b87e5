//! Reading one convolution kernel for `bedside tucker`: a NumPy `.npy` file,
//! or one tensor of a safetensors file (`weights.safetensors:name`).
//!
//! The `.npy` reader is written here because it is a 10-line header plus raw
//! little-endian values, and no kept library reads it.

use std::path::Path;

use super::CliError;

/// A kernel's shape and its values, row-major.
#[derive(Debug)]
pub struct KernelFile {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// `path.npy` or `path.safetensors:tensor_name`.
pub fn read_kernel(spec: &str) -> Result<KernelFile, CliError> {
    if let Some((file, name)) = spec.rsplit_once(':').filter(|(f, _)| f.ends_with(".safetensors")) {
        let bytes = std::fs::read(file).map_err(|e| CliError(format!("cannot read {file}: {e}")))?;
        return safetensors_kernel(&bytes, name).map_err(|e| CliError(format!("{file}: {e}")));
    }
    let path = Path::new(spec);
    if path.extension().and_then(|e| e.to_str()) != Some("npy") {
        return Err(CliError(format!("{spec}: give a .npy file or FILE.safetensors:TENSOR_NAME")));
    }
    let bytes = std::fs::read(path).map_err(|e| CliError(format!("cannot read {spec}: {e}")))?;
    npy_kernel(&bytes).map_err(|e| CliError(format!("{spec}: {e}")))
}

fn safetensors_kernel(bytes: &[u8], name: &str) -> Result<KernelFile, String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let view = tensors.tensor(name).map_err(|_| {
        let mut names: Vec<String> = tensors.names().into_iter().filter(|n| n.ends_with("weight")).map(|n| n.to_string()).collect();
        names.sort();
        format!("no tensor \"{name}\"; weights in this file: {}", names.join(", "))
    })?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        safetensors::Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        safetensors::Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        safetensors::Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        safetensors::Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(format!("tensor \"{name}\" is {other:?}, not a floating-point kernel")),
    };
    Ok(KernelFile { shape: view.shape().to_vec(), values })
}

/// NumPy format 1.0–3.0, little-endian f4 or f8, C order.
fn npy_kernel(bytes: &[u8]) -> Result<KernelFile, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let header = bytes.get(start..start + header_len).ok_or("the .npy header is truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header.find(&format!("'{key}'")).ok_or(format!("the .npy header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    let width = match descr.get(..5) {
        Some("'<f4'") => 4,
        Some("'<f8'") => 8,
        _ => return Err(format!("only little-endian float32/float64 kernels are read; this one is {}", descr.split(',').next().unwrap_or(""))),
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not read; save with np.ascontiguousarray".into());
    }
    let shape_text = field("shape")?;
    let inner = shape_text.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("the .npy shape is malformed")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("the .npy shape has \"{s}\"")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the .npy shape overflows")?;
    let data = &bytes[start + header_len..];
    if data.len() != count * width {
        return Err(format!("shape {shape:?} needs {} bytes of data, the file has {}", count * width, data.len()));
    }
    let values = if width == 4 {
        data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    } else {
        data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect()
    };
    Ok(KernelFile { shape, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_float32_and_float64_npy() {
        let data: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let k = npy_kernel(&npy("<f4", "(2, 2)", &data)).unwrap();
        assert_eq!((k.shape, k.values), (vec![2, 2], vec![1.0, -2.0, 3.5, 0.25]));
        let data: Vec<u8> = [1.5f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let k = npy_kernel(&npy("<f8", "(2, 1, 1, 1, 1)", &data)).unwrap();
        assert_eq!((k.shape, k.values), (vec![2, 1, 1, 1, 1], vec![1.5, 2.0]));
    }

    #[test]
    fn refuses_bad_npy_with_a_reason() {
        let data = [0u8; 16];
        assert!(npy_kernel(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
        assert!(npy_kernel(&npy("<f4", "(2, 3)", &data)).unwrap_err().contains("needs 24 bytes"));
        assert!(npy_kernel(&npy("<i8", "(2,)", &data)).unwrap_err().contains("float32"));
        assert!(npy_kernel(&npy("<f4", "(2, 3)", &data)[..20]).unwrap_err().contains("truncated"));
    }
}
