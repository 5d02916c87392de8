//! Weight publication, transport-agnostic (design: "actors fetch weights: gRPC chunks + checksum").
//!
//! Sender: [`publish`] serialises named tensors into one safetensors buffer, cuts it into chunks
//! of at most `chunk_bytes`, and describes everything in a [`WeightManifest`]: a SHA-256 per
//! chunk, per tensor (its raw bytes) and for the whole buffer, plus the policy version.
//! Receiver: a [`Reassembler`] accepts chunks in any order, rejects a chunk whose checksum, size,
//! index or version is wrong (the caller re-requests it), and [`Reassembler::finish`] verifies the
//! whole buffer and every tensor before returning anything. [`apply`] then checks every name and
//! shape against the live model BEFORE copying, so a bad publication never leaves the model half
//! updated: the new weights are fully built, then swapped in.

use crate::error::{LearnerError, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use tch::{nn::VarStore, Kind, Tensor};

/// One chunk's place and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub index: u32,
    pub offset: u64,
    pub len: u64,
    /// Hex SHA-256 of the chunk's bytes.
    pub sha256: String,
}

/// One tensor's identity and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    /// safetensors dtype name (`F32`, `BF16`, `F16`).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Hex SHA-256 of the tensor's little-endian bytes.
    pub sha256: String,
}

/// Everything a receiver needs to verify a publication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightManifest {
    pub policy_version: u64,
    pub total_bytes: u64,
    pub chunks: Vec<ChunkInfo>,
    pub tensors: Vec<TensorInfo>,
    /// Hex SHA-256 of the whole safetensors buffer.
    pub sha256: String,
}

/// One chunk on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightChunk {
    pub policy_version: u64,
    pub index: u32,
    pub data: Vec<u8>,
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    match kind {
        Kind::Float => Ok(Dtype::F32),
        Kind::BFloat16 => Ok(Dtype::BF16),
        Kind::Half => Ok(Dtype::F16),
        other => Err(LearnerError::Weights(format!("unsupported tensor kind {other:?}"))),
    }
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    match dtype {
        Dtype::F32 => Ok(Kind::Float),
        Dtype::BF16 => Ok(Kind::BFloat16),
        Dtype::F16 => Ok(Kind::Half),
        other => Err(LearnerError::Weights(format!("unsupported dtype {other:?}"))),
    }
}

/// Raw little-endian bytes of a tensor (copied to the host).
pub fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    let n = t.numel();
    let mut buf = vec![0u8; n * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut buf, n);
    buf
}

/// The named tensors of a `VarStore`, sorted by name (what a publication carries).
pub fn named_tensors(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Serialises `tensors` (host sync: copies them to the host) into a manifest and its chunks.
pub fn publish(
    tensors: &[(String, Tensor)],
    policy_version: u64,
    chunk_bytes: usize,
) -> Result<(WeightManifest, Vec<WeightChunk>)> {
    if chunk_bytes == 0 {
        return Err(LearnerError::InvalidArgument {
            arg: "chunk_bytes".into(),
            msg: "must be positive".into(),
        });
    }
    let mut raw: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        let dtype = dtype_of(t.kind())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        raw.insert(name.clone(), (dtype, shape, tensor_bytes(t)));
    }
    let infos: Vec<TensorInfo> = raw
        .iter()
        .map(|(name, (d, s, b))| TensorInfo {
            name: name.clone(),
            dtype: format!("{d:?}"),
            shape: s.clone(),
            sha256: sha_hex(b),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, (d, s, b))| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| LearnerError::Weights(format!("building tensor view: {e}")))?;
    let buf = safetensors::serialize(views, &None).map_err(|e| LearnerError::Weights(format!("serialising: {e}")))?;
    let mut chunks = Vec::new();
    let mut infos_c = Vec::new();
    for (i, part) in buf.chunks(chunk_bytes).enumerate() {
        infos_c.push(ChunkInfo {
            index: i as u32,
            offset: (i * chunk_bytes) as u64,
            len: part.len() as u64,
            sha256: sha_hex(part),
        });
        chunks.push(WeightChunk {
            policy_version,
            index: i as u32,
            data: part.to_vec(),
        });
    }
    let manifest = WeightManifest {
        policy_version,
        total_bytes: buf.len() as u64,
        chunks: infos_c,
        tensors: infos,
        sha256: sha_hex(&buf),
    };
    Ok((manifest, chunks))
}

/// Receiving side: collects verified chunks of one publication.
#[derive(Debug)]
pub struct Reassembler {
    manifest: WeightManifest,
    buf: Vec<u8>,
    received: Vec<bool>,
}

impl Reassembler {
    /// Checks the manifest's chunk layout (contiguous, covering `total_bytes`).
    pub fn new(manifest: WeightManifest) -> Result<Self> {
        let mut off = 0u64;
        for (i, c) in manifest.chunks.iter().enumerate() {
            if c.index as usize != i || c.offset != off || c.len == 0 {
                return Err(LearnerError::Weights(format!(
                    "manifest: chunk {i} is out of place (index {}, offset {}, len {})",
                    c.index, c.offset, c.len
                )));
            }
            off += c.len;
        }
        if off != manifest.total_bytes {
            return Err(LearnerError::Weights(format!(
                "manifest: chunks cover {off} of {} bytes",
                manifest.total_bytes
            )));
        }
        let n = manifest.chunks.len();
        Ok(Reassembler {
            buf: vec![0; manifest.total_bytes as usize],
            received: vec![false; n],
            manifest,
        })
    }

    /// Verifies and stores one chunk. A corrupted or foreign chunk is an error naming it; the
    /// reassembler stays usable (re-send that chunk).
    pub fn push(&mut self, c: &WeightChunk) -> Result<()> {
        if c.policy_version != self.manifest.policy_version {
            return Err(LearnerError::Weights(format!(
                "chunk {} is from version {}, expected {}",
                c.index, c.policy_version, self.manifest.policy_version
            )));
        }
        let info = self.manifest.chunks.get(c.index as usize).ok_or_else(|| {
            LearnerError::Weights(format!(
                "chunk index {} out of range ({} chunks)",
                c.index,
                self.manifest.chunks.len()
            ))
        })?;
        if c.data.len() as u64 != info.len {
            return Err(LearnerError::Weights(format!(
                "chunk {}: {} bytes, expected {}",
                c.index,
                c.data.len(),
                info.len
            )));
        }
        if sha_hex(&c.data) != info.sha256 {
            return Err(LearnerError::Weights(format!(
                "chunk {}: checksum mismatch (corrupted in transit)",
                c.index
            )));
        }
        let off = info.offset as usize;
        self.buf[off..off + c.data.len()].copy_from_slice(&c.data);
        self.received[c.index as usize] = true;
        Ok(())
    }

    /// Indices of chunks not yet received.
    pub fn missing(&self) -> Vec<u32> {
        self.received
            .iter()
            .enumerate()
            .filter(|(_, r)| !**r)
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Verifies the whole buffer and every tensor, then builds the tensors (on the CPU).
    pub fn finish(self) -> Result<Vec<(String, Tensor)>> {
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(LearnerError::Weights(format!("chunks {missing:?} missing")));
        }
        if sha_hex(&self.buf) != self.manifest.sha256 {
            return Err(LearnerError::Weights("whole-buffer checksum mismatch".into()));
        }
        let st = SafeTensors::deserialize(&self.buf)
            .map_err(|e| LearnerError::Weights(format!("not a safetensors buffer: {e}")))?;
        let mut out = Vec::with_capacity(self.manifest.tensors.len());
        for info in &self.manifest.tensors {
            let view = st
                .tensor(&info.name)
                .map_err(|e| LearnerError::Weights(format!("tensor `{}`: {e}", info.name)))?;
            if view.shape() != info.shape.as_slice() || format!("{:?}", view.dtype()) != info.dtype {
                return Err(LearnerError::Weights(format!(
                    "tensor `{}`: dtype/shape disagree with the manifest",
                    info.name
                )));
            }
            if sha_hex(view.data()) != info.sha256 {
                return Err(LearnerError::Weights(format!(
                    "tensor `{}`: checksum mismatch",
                    info.name
                )));
            }
            let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
            out.push((
                info.name.clone(),
                Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)?,
            ));
        }
        if st.len() != self.manifest.tensors.len() {
            return Err(LearnerError::Weights(format!(
                "buffer holds {} tensors, manifest lists {}",
                st.len(),
                self.manifest.tensors.len()
            )));
        }
        Ok(out)
    }
}

/// Swaps verified tensors into `vs`: every variable must be present with its shape (checked for
/// all before any copy), then all are copied (converting dtype and device).
pub fn apply(vs: &VarStore, tensors: &[(String, Tensor)]) -> Result<()> {
    let vars = vs.variables();
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, var) in &vars {
        match by_name.get(name.as_str()) {
            None => {
                return Err(LearnerError::Weights(format!(
                    "tensor `{name}` missing from the publication"
                )))
            }
            Some(t) if t.size() != var.size() => {
                return Err(LearnerError::Weights(format!(
                    "tensor `{name}`: shape {:?}, model has {:?}",
                    t.size(),
                    var.size()
                )))
            }
            _ => {}
        }
    }
    if let Some((n, _)) = tensors.iter().find(|(n, _)| !vars.contains_key(n)) {
        return Err(LearnerError::Weights(format!(
            "tensor `{n}` is not a parameter of the model"
        )));
    }
    let _g = tch::no_grad_guard();
    for (name, var) in vars {
        let src = by_name[name.as_str()];
        let mut var = var;
        var.f_copy_(&src.to_kind(var.kind()).to_device(var.device()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(seed: i64) -> VarStore {
        tch::manual_seed(seed);
        let vs = VarStore::new(tch::Device::Cpu);
        let r = vs.root();
        let _ = (&r / "a").randn("weight", &[7, 5], 0.0, 1.0);
        let _ = (&r / "b").randn("bias", &[3], 0.0, 1.0);
        vs
    }

    #[test]
    fn round_trip_out_of_order_and_corruption_detected() {
        let src = store(1);
        let (manifest, chunks) = publish(&named_tensors(&src), 7, 64).unwrap();
        assert!(chunks.len() > 3);
        let json = serde_json::to_string(&manifest).unwrap();
        let mut r = Reassembler::new(serde_json::from_str(&json).unwrap()).unwrap();
        let mut bad = chunks[1].clone();
        bad.data[3] ^= 0x40;
        let err = r.push(&bad).unwrap_err().to_string();
        assert!(err.contains("chunk 1: checksum mismatch"), "{err}");
        let stale = WeightChunk {
            policy_version: 6,
            ..chunks[0].clone()
        };
        assert!(r.push(&stale).unwrap_err().to_string().contains("version 6"));
        for c in chunks.iter().rev() {
            r.push(c).unwrap();
        }
        let got = r.finish().unwrap();
        let dst = store(2);
        apply(&dst, &got).unwrap();
        for (n, t) in named_tensors(&src) {
            let d = &dst.variables()[&n];
            assert_eq!(tensor_bytes(&t), tensor_bytes(d), "{n}");
        }
    }

    #[test]
    fn incomplete_or_mismatched_publications_leave_the_model_untouched() {
        let src = store(1);
        let (manifest, chunks) = publish(&named_tensors(&src), 1, 100).unwrap();
        let mut r = Reassembler::new(manifest.clone()).unwrap();
        r.push(&chunks[0]).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("missing"));
        let dst = store(2);
        let before = tensor_bytes(&dst.variables()["a.weight"]);
        let partial = vec![(
            "a.weight".to_string(),
            Tensor::zeros([7, 5], (Kind::Float, tch::Device::Cpu)),
        )];
        assert!(apply(&dst, &partial).unwrap_err().to_string().contains("b.bias"));
        assert_eq!(before, tensor_bytes(&dst.variables()["a.weight"]));
        let mut bad = manifest;
        bad.total_bytes += 1;
        assert!(Reassembler::new(bad).is_err());
    }
}
