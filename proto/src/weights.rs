//! Policy weights on the wire (LearnerService `DownloadWeights`; design.md "actors fetch weights:
//! gRPC chunks + checksum"), pure Rust so actors use it without libtorch.
//!
//! Server side: [`manifest_of`] describes a safetensors file — one [`pb::TensorDigest`] per
//! tensor (name, dtype, shape, absolute byte range, SHA-256) in file order plus the whole file's
//! SHA-256 — and [`download_stream`] turns one stored file into manifest → chunks → trailer.
//! Client side: an [`Assembler`] takes the messages in order and checks everything it can as they
//! arrive (order, offsets, sizes), then [`Assembler::finish`] verifies the trailer, the whole
//! SHA-256 and every tensor's SHA-256 before any byte is handed out; [`download_and_verify`] runs
//! the RPC under a deadline. A corrupted or truncated download is an error naming what disagreed;
//! the caller keeps its old weights and retries.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::v1 as pb;
use pb::download_weights_response::Part;
use pb::learner_service_client::LearnerServiceClient;

/// What can be wrong with a weights file or its download.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The bytes are not a safetensors file.
    #[error("weights of policy version {version}: not a safetensors file: {msg}")]
    NotSafetensors { version: u64, msg: String },
    /// The download stream broke the manifest → chunks → trailer protocol.
    #[error("weights download of policy version {version}: {msg}")]
    Protocol { version: u64, msg: String },
    /// A checksum disagrees with the manifest (corrupted in transit or at rest).
    #[error("weights of policy version {version}: checksum mismatch of {what}")]
    Checksum { version: u64, what: String },
    /// The RPC failed (NOT_FOUND for a version no longer kept, UNAVAILABLE, DEADLINE_EXCEEDED...).
    #[error("weights download of policy version {version}: {status}")]
    Rpc { version: u64, status: tonic::Status },
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest of safetensors file `bytes` as policy version `version`: every tensor in file
/// order with its absolute byte range and SHA-256, the whole file's size and SHA-256.
pub fn manifest_of(version: u64, bytes: &[u8], config_json: &str) -> Result<pb::WeightsManifest, WeightsError> {
    Ok(pb::WeightsManifest {
        policy_version: version,
        total_bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        tensors: tensor_digests(version, bytes)?,
        config_json: config_json.to_string(),
    })
}

/// One digest per tensor of safetensors file `bytes`, sorted by position in the file.
pub fn tensor_digests(version: u64, bytes: &[u8]) -> Result<Vec<pb::TensorDigest>, WeightsError> {
    let bad = |msg: String| WeightsError::NotSafetensors { version, msg };
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    // Data offsets are relative to the end of the 8-byte length prefix and the JSON header.
    let base = 8 + header_len;
    let mut out = Vec::new();
    for (name, info) in meta.tensors() {
        let (b, e) = info.data_offsets;
        let (begin, end) = (base + b, base + e);
        let data = bytes
            .get(begin..end)
            .ok_or_else(|| bad(format!("tensor `{name}`: bytes {begin}..{end} beyond the file ({} bytes)", bytes.len())))?;
        out.push(pb::TensorDigest {
            name,
            dtype: format!("{:?}", info.dtype),
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            begin: begin as u64,
            end: end as u64,
            sha256: sha256_hex(data),
        });
    }
    out.sort_by(|a, b| (a.begin, &a.name).cmp(&(b.begin, &b.name)));
    Ok(out)
}

/// The `DownloadWeights` messages of one stored file: the manifest, chunks of at most
/// `chunk_bytes` (≥ 1) in order, the trailer. Lazy: each chunk is copied only when polled.
pub fn download_stream(
    manifest: pb::WeightsManifest,
    bytes: std::sync::Arc<Vec<u8>>,
    chunk_bytes: usize,
) -> impl Iterator<Item = pb::DownloadWeightsResponse> + Send + 'static {
    let chunk_bytes = chunk_bytes.max(1);
    let trailer = pb::WeightsTrailer { total_bytes: manifest.total_bytes, sha256: manifest.sha256.clone() };
    let n = bytes.len().div_ceil(chunk_bytes);
    let chunks = (0..n).map(move |i| {
        let lo = i * chunk_bytes;
        let hi = (lo + chunk_bytes).min(bytes.len());
        Part::Chunk(pb::WeightsChunk { offset: lo as u64, data: bytes[lo..hi].to_vec() })
    });
    std::iter::once(Part::Manifest(manifest))
        .chain(chunks)
        .chain(std::iter::once(Part::Trailer(trailer)))
        .map(|p| pb::DownloadWeightsResponse { part: Some(p) })
}

/// Receiving side of one download: feed every message with [`Assembler::push`], then
/// [`Assembler::finish`].
#[derive(Debug, Default)]
pub struct Assembler {
    /// Version asked for (0 = newest), for error messages until the manifest names it.
    requested: u64,
    manifest: Option<pb::WeightsManifest>,
    buf: Vec<u8>,
    hasher: Sha256,
    trailer: Option<pb::WeightsTrailer>,
}

impl Assembler {
    /// An assembler for a download of `requested` (0 = newest).
    pub fn new(requested: u64) -> Self {
        Assembler { requested, ..Default::default() }
    }

    fn version(&self) -> u64 {
        self.manifest.as_ref().map_or(self.requested, |m| m.policy_version)
    }

    fn protocol(&self, msg: impl Into<String>) -> WeightsError {
        WeightsError::Protocol { version: self.version(), msg: msg.into() }
    }

    /// Takes the next message of the stream; errors on anything out of protocol (a message before
    /// the manifest or after the trailer, a gap or overlap, more bytes than announced, the wrong
    /// version).
    pub fn push(&mut self, msg: pb::DownloadWeightsResponse) -> Result<(), WeightsError> {
        if self.trailer.is_some() {
            return Err(self.protocol("message after the trailer"));
        }
        match msg.part {
            None => Err(self.protocol("empty message")),
            Some(Part::Manifest(m)) => {
                if self.manifest.is_some() {
                    return Err(self.protocol("second manifest"));
                }
                if self.requested != 0 && m.policy_version != self.requested {
                    return Err(self.protocol(format!("server sent version {}", m.policy_version)));
                }
                // Reserve what is announced, but never trust a huge claim before bytes arrive.
                self.buf.reserve(m.total_bytes.min(1 << 30) as usize);
                self.manifest = Some(m);
                Ok(())
            }
            Some(Part::Chunk(c)) => {
                let Some(m) = &self.manifest else {
                    return Err(self.protocol("chunk before the manifest"));
                };
                if c.offset != self.buf.len() as u64 {
                    return Err(self.protocol(format!("chunk at offset {}, expected {}", c.offset, self.buf.len())));
                }
                if self.buf.len() as u64 + c.data.len() as u64 > m.total_bytes {
                    return Err(self.protocol(format!("more than the announced {} bytes", m.total_bytes)));
                }
                self.hasher.update(&c.data);
                self.buf.extend_from_slice(&c.data);
                Ok(())
            }
            Some(Part::Trailer(t)) => {
                if self.manifest.is_none() {
                    return Err(self.protocol("trailer before the manifest"));
                }
                self.trailer = Some(t);
                Ok(())
            }
        }
    }

    /// Verifies the download (trailer, sizes, whole SHA-256, every tensor's range and SHA-256
    /// against the manifest) and returns `(version, file bytes, manifest)`.
    pub fn finish(self) -> Result<(u64, Vec<u8>, pb::WeightsManifest), WeightsError> {
        let version = self.version();
        let (Some(m), Some(t)) = (self.manifest, self.trailer) else {
            return Err(WeightsError::Protocol { version, msg: "stream ended before the trailer".into() });
        };
        let proto = |msg: String| WeightsError::Protocol { version, msg };
        let sum = |what: String| WeightsError::Checksum { version, what };
        if self.buf.len() as u64 != m.total_bytes || t.total_bytes != m.total_bytes {
            return Err(proto(format!(
                "received {} bytes, manifest says {}, trailer says {}",
                self.buf.len(),
                m.total_bytes,
                t.total_bytes
            )));
        }
        let got = hex::encode(self.hasher.finalize());
        if got != m.sha256 || t.sha256 != m.sha256 {
            return Err(sum("the whole file".into()));
        }
        let digests = tensor_digests(version, &self.buf)?;
        if digests.len() != m.tensors.len() {
            return Err(proto(format!("file holds {} tensors, manifest lists {}", digests.len(), m.tensors.len())));
        }
        for (got, want) in digests.iter().zip(&m.tensors) {
            let same_place = got.name == want.name
                && got.dtype == want.dtype
                && got.shape == want.shape
                && (got.begin, got.end) == (want.begin, want.end);
            if !same_place {
                return Err(proto(format!("tensor `{}` disagrees with the manifest's `{}` (name, dtype, shape or range)", got.name, want.name)));
            }
            if got.sha256 != want.sha256 {
                return Err(sum(format!("tensor `{}`", want.name)));
            }
        }
        Ok((version, self.buf, m))
    }
}

/// Options of [`download_and_verify_with`].
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Preferred chunk size (0 = the server's default). Default 0.
    pub chunk_bytes: u32,
    /// Deadline of the whole download. Default 300 s.
    pub timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { chunk_bytes: 0, timeout: Duration::from_secs(300) }
    }
}

/// Downloads policy version `version` (0 = newest) and verifies every checksum; returns
/// `(version, safetensors bytes)`. Default options (300 s deadline).
pub async fn download_and_verify(client: &mut LearnerServiceClient<Channel>, version: u64) -> Result<(u64, Vec<u8>), WeightsError> {
    let (v, bytes, _) = download_and_verify_with(client, version, &DownloadOptions::default()).await?;
    Ok((v, bytes))
}

/// [`download_and_verify`] with options; also returns the manifest (tensor list, `config.json`).
pub async fn download_and_verify_with(
    client: &mut LearnerServiceClient<Channel>,
    version: u64,
    opts: &DownloadOptions,
) -> Result<(u64, Vec<u8>, pb::WeightsManifest), WeightsError> {
    let rpc = |status| WeightsError::Rpc { version, status };
    let fut = async {
        let mut req = tonic::Request::new(pb::DownloadWeightsRequest { policy_version: version, chunk_bytes: opts.chunk_bytes });
        req.set_timeout(opts.timeout);
        let mut stream = client.download_weights(req).await.map_err(rpc)?.into_inner();
        let mut asm = Assembler::new(version);
        while let Some(msg) = stream.message().await.map_err(rpc)? {
            asm.push(msg)?;
        }
        asm.finish()
    };
    match tokio::time::timeout(opts.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(rpc(tonic::Status::deadline_exceeded(format!("no complete download within {:?}", opts.timeout)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn file() -> Vec<u8> {
        let a: Vec<u8> = (0..24u8).collect(); // 2x3 f32
        let b: Vec<u8> = vec![7; 8]; // 4 bf16
        let views = vec![
            ("a.weight".to_string(), TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
            ("b.bias".to_string(), TensorView::new(Dtype::BF16, vec![4], &b).unwrap()),
        ];
        safetensors::serialize(views, &None).unwrap()
    }

    fn messages(chunk: usize) -> (Vec<pb::DownloadWeightsResponse>, Vec<u8>) {
        let bytes = file();
        let m = manifest_of(3, &bytes, "{}").unwrap();
        (download_stream(m, std::sync::Arc::new(bytes.clone()), chunk).collect(), bytes)
    }

    #[test]
    fn manifest_lists_tensors_with_absolute_ranges() {
        let bytes = file();
        let m = manifest_of(3, &bytes, "{\"x\":1}").unwrap();
        assert_eq!(m.total_bytes, bytes.len() as u64);
        assert_eq!(m.tensors.len(), 2);
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        // safetensors sorts data by dtype alignment then name: F32 a (24 bytes) first.
        let a = m.tensors.iter().find(|t| t.name == "a.weight").unwrap();
        assert_eq!((a.dtype.as_str(), a.shape.as_slice()), ("F32", &[2u64, 3][..]));
        assert_eq!(a.end - a.begin, 24);
        assert!(a.begin >= 8 + header as u64);
        let data: Vec<u8> = (0..24u8).collect();
        assert_eq!(&bytes[a.begin as usize..a.end as usize], &data[..]);
        assert_eq!(a.sha256, sha256_hex(&data));
        assert!(m.tensors.windows(2).all(|w| w[0].begin < w[1].begin));
        let err = manifest_of(1, b"not safetensors", "").unwrap_err().to_string();
        assert!(err.contains("version 1: not a safetensors file"), "{err}");
    }

    #[test]
    fn round_trip_in_small_chunks() {
        let (msgs, bytes) = messages(5);
        assert_eq!(msgs.len(), 2 + bytes.len().div_ceil(5));
        let mut asm = Assembler::new(3);
        for m in msgs {
            asm.push(m).unwrap();
        }
        let (v, got, m) = asm.finish().unwrap();
        assert_eq!((v, got, m.config_json.as_str()), (3, bytes, "{}"));
    }

    #[test]
    fn corrupted_chunk_is_rejected_by_the_whole_checksum() {
        let (mut msgs, _) = messages(16);
        if let Some(Part::Chunk(c)) = &mut msgs[3].part {
            c.data[0] ^= 1;
        }
        let mut asm = Assembler::new(0);
        for m in msgs {
            asm.push(m).unwrap();
        }
        let err = asm.finish().unwrap_err();
        assert!(matches!(err, WeightsError::Checksum { version: 3, .. }), "{err}");
    }

    #[test]
    fn tampered_tensor_with_matching_whole_checksum_is_caught_per_tensor() {
        // An attacker who also rewrites the whole-file checksum still fails the tensor's.
        let (mut msgs, bytes) = messages(1 << 20);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let sum = sha256_hex(&bad);
        for m in &mut msgs {
            match &mut m.part {
                Some(Part::Manifest(x)) => x.sha256 = sum.clone(),
                Some(Part::Chunk(c)) => c.data = bad.clone(),
                Some(Part::Trailer(t)) => t.sha256 = sum.clone(),
                None => {}
            }
        }
        let mut asm = Assembler::new(3);
        for m in msgs {
            asm.push(m).unwrap();
        }
        let err = asm.finish().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch of tensor `b.bias`"), "{err}");
    }

    #[test]
    fn protocol_errors_are_named() {
        let (msgs, _) = messages(8);
        let mut asm = Assembler::new(3);
        let err = asm.push(msgs[1].clone()).unwrap_err().to_string();
        assert!(err.contains("chunk before the manifest"), "{err}");
        let mut asm = Assembler::new(3);
        asm.push(msgs[0].clone()).unwrap();
        let err = asm.push(msgs[2].clone()).unwrap_err().to_string();
        assert!(err.contains("chunk at offset 8, expected 0"), "{err}");
        let mut asm = Assembler::new(4);
        let err = asm.push(msgs[0].clone()).unwrap_err().to_string();
        assert!(err.contains("server sent version 3"), "{err}");
        let mut asm = Assembler::new(3);
        asm.push(msgs[0].clone()).unwrap();
        asm.push(msgs[1].clone()).unwrap();
        let err = asm.finish().unwrap_err().to_string();
        assert!(err.contains("before the trailer"), "{err}");
        let mut asm = Assembler::new(3);
        let n = msgs.len();
        for m in msgs.iter().take(n - 2).cloned().chain(std::iter::once(msgs[n - 1].clone())) {
            asm.push(m).unwrap();
        }
        let err = asm.finish().unwrap_err().to_string();
        assert!(err.contains("received"), "{err}");
    }
}
