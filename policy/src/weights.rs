//! Safetensors weights in and out of a `VarStore`, in the Hugging Face layout: one
//! `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` listed by
//! `model.safetensors.index.json`. Tensors are copied into the store's own variables with a
//! dtype conversion (f32 / bf16 / f16 / f64 files into an f32 or bf16 model), never by
//! `VarStore::load`, which would switch the variables to the file's dtype.
//!
//! Strictness (documented choice): a missing parameter, a mis-shaped tensor, an unsupported
//! dtype or a tensor that is no parameter of the model is an error naming the file and the
//! tensor. Two kinds of extra tensor are accepted and skipped: `lm_head.weight` when the
//! embeddings are tied (some HF Qwen2 checkpoints still carry it) and rotary `inv_freq`
//! buffers (older transformers saved them).
//!
//! Writes are atomic: each file goes to a temporary name in the same folder, is fsynced and
//! renamed over the target, then the folder is fsynced.
//!
//! Reads map each weight file into memory (read-only `mmap`) and copy the tensors out of the
//! mapping one at a time, so loading a multi-GB shard never holds a second whole copy of it on
//! the heap; the page cache serves the bytes.

use crate::error::{PolicyError, Result};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

/// Single-file weights name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Shard index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

fn tensor_err(path: &Path, tensor: &str, msg: impl Into<String>) -> PolicyError {
    PolicyError::Tensor { path: path.to_path_buf(), tensor: tensor.into(), msg: msg.into() }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    match kind {
        Kind::Float => Some(Dtype::F32),
        Kind::BFloat16 => Some(Dtype::BF16),
        Kind::Half => Some(Dtype::F16),
        Kind::Double => Some(Dtype::F64),
        _ => None,
    }
}

/// The weight files of a folder: the single file when present (transformers' precedence),
/// else the shards named by the index. Returns the files and the path to name in "missing
/// tensor" errors.
fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf)> {
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok((vec![single.clone()], single));
    }
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let v = crate::config::read_json(&index)?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
            PolicyError::Config {
                path: index.clone(),
                field: "weight_map".into(),
                msg: "missing or not an object".into(),
            }
        })?;
        let mut files = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| PolicyError::Config {
                path: index.clone(),
                field: format!("weight_map.{tensor}"),
                msg: "expected a file name".into(),
            })?;
            let path = dir.join(file);
            if !files.contains(&path) {
                files.push(path);
            }
        }
        files.sort();
        return Ok((files, index));
    }
    let source = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no {SINGLE_FILE} and no {INDEX_FILE} in the folder"),
    );
    Err(PolicyError::Io { path: single, source })
}

/// Copies every parameter of `vs` from the safetensors weights in `dir`, converting dtypes.
/// `tied`: the model ties `lm_head` to the embeddings (an `lm_head.weight` is then skipped).
pub fn load_into(vs: &VarStore, dir: &Path, tied: bool) -> Result<()> {
    let (files, source) = weight_files(dir)?;
    let vars = vs.variables();
    let mut loaded: HashSet<String> = HashSet::new();
    for file in &files {
        let bytes = map_file(file)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| tensor_err(file, "(header)", format!("not a safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            let Some(var) = vars.get(&name) else {
                if (tied && name == "lm_head.weight") || name.ends_with("rotary_emb.inv_freq") {
                    tracing::debug!(tensor = %name, file = %file.display(), "skipping tensor");
                    continue;
                }
                return Err(tensor_err(
                    file,
                    &name,
                    "unexpected tensor: not a parameter of the Qwen2 model config.json describes",
                ));
            };
            if !loaded.insert(name.clone()) {
                return Err(tensor_err(file, &name, "appears in more than one weight file"));
            }
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(tensor_err(
                    file,
                    &name,
                    format!("shape mismatch: expected {:?}, got {:?}", var.size(), shape),
                ));
            }
            let kind = kind_of(view.dtype()).ok_or_else(|| {
                tensor_err(file, &name, format!("unsupported dtype {:?}", view.dtype()))
            })?;
            // safetensors checked at deserialize that data.len() == numel * element size.
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            let mut dst = var.shallow_clone();
            tch::no_grad(|| dst.f_copy_(&t))?;
        }
    }
    let mut missing: Vec<&String> = vars.keys().filter(|k| !loaded.contains(*k)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        let n = missing.len();
        return Err(tensor_err(
            &source,
            first,
            format!("missing ({n} of {} parameters missing)", vars.len()),
        ));
    }
    Ok(())
}

/// A weight file's bytes: a read-only memory map (an empty file reads as no bytes, which mmap
/// cannot map).
fn map_file(path: &Path) -> Result<FileBytes> {
    let io = |e| PolicyError::Io { path: path.to_path_buf(), source: e };
    let f = std::fs::File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.len() == 0 {
        return Ok(FileBytes::Empty);
    }
    // SAFETY: the map is read-only and dropped before `load_into` returns. Undefined behaviour
    // would need the file to change while mapped: this crate replaces weight files by rename
    // (`write_atomic`), which leaves the mapped inode intact, and never rewrites one in place;
    // another program truncating a checkpoint while it loads is outside the contract (as for
    // every mmap-based safetensors loader).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
    Ok(FileBytes::Mapped(map))
}

/// Bytes of one weight file.
enum FileBytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Empty => &[],
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| PolicyError::Io { path: path.to_path_buf(), source: e };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Writes JSON pretty-printed (as transformers does) and atomically.
pub fn write_json_atomic(path: &Path, v: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| PolicyError::Json { path: path.to_path_buf(), msg: e.to_string() })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// One tensor ready to serialise.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_host(t: &Tensor, kind: Kind, name: &str, dir: &Path) -> Result<HostTensor> {
    let dtype = dtype_of(kind)
        .ok_or_else(|| tensor_err(dir, name, format!("cannot save as {kind:?}")))?;
    let t = t.detach().to_kind(kind).to_device(tch::Device::Cpu).contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(HostTensor { dtype, shape, data })
}

/// Saves every variable of `vs` under its name into `dir`, as `kind`: one `model.safetensors`
/// when the total fits `max_shard_bytes`, otherwise shards plus an index. Weight files of the
/// other layout left in `dir` by an earlier save are removed after the new ones are in place.
pub fn save_from(vs: &VarStore, dir: &Path, kind: Kind, max_shard_bytes: u64) -> Result<()> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut shards: Vec<Vec<(String, HostTensor)>> = vec![Vec::new()];
    let (mut current, mut total) = (0u64, 0u64);
    for (name, t) in &vars {
        let host = to_host(t, kind, name, dir)?;
        let size = host.data.len() as u64;
        if current > 0 && current + size > max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += size;
        total += size;
        shards.last_mut().expect("at least one shard").push((name.clone(), host));
    }
    let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let n = shards.len();
    let names: Vec<String> = if n == 1 {
        vec![SINGLE_FILE.to_string()]
    } else {
        (1..=n).map(|i| format!("model-{i:05}-of-{n:05}.safetensors")).collect()
    };
    let mut weight_map = serde_json::Map::new();
    for (shard, file) in shards.iter().zip(&names) {
        let path = dir.join(file);
        let bytes = safetensors::serialize(shard.iter().map(|(k, v)| (k.as_str(), v)), &meta)
            .map_err(|e| tensor_err(&path, "(all)", format!("serialize: {e}")))?;
        write_atomic(&path, &bytes)?;
        for (k, _) in shard {
            weight_map.insert(k.clone(), json!(file));
        }
    }
    if n > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json_atomic(&dir.join(INDEX_FILE), &index)?;
    }
    remove_stale(dir, &names)
}

/// Removes weight files of an earlier save that are not among `keep`.
fn remove_stale(dir: &Path, keep: &[String]) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| PolicyError::Io { path: dir.to_path_buf(), source: e })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_shard = name.starts_with("model-") && name.ends_with(".safetensors");
        let stale = (is_shard || name == SINGLE_FILE || (name == INDEX_FILE && keep.len() == 1))
            && !keep.contains(&name);
        if stale {
            std::fs::remove_file(entry.path())
                .map_err(|e| PolicyError::Io { path: entry.path(), source: e })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty (unmappable) or garbage weight file is an error naming the file, not a panic.
    #[test]
    fn empty_and_garbage_weight_files_are_named_errors() {
        let vs = VarStore::new(tch::Device::Cpu);
        let _w = vs.root().var("w", &[2], tch::nn::Init::Const(0.0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SINGLE_FILE);
        for bytes in [&b""[..], &b"not a safetensors file at all"[..]] {
            std::fs::write(&path, bytes).unwrap();
            let err = load_into(&vs, dir.path(), true).unwrap_err().to_string();
            assert!(err.contains("model.safetensors") && err.contains("not a safetensors file"), "{err}");
        }
    }
}
