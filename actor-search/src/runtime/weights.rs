//! Fetching a policy version from the learner (`LearnerService.DownloadWeights`), verified before
//! anything touches the model (design.md complaint #2: no silently skipped or corrupted weight
//! sync). The protocol and the checks (order, sizes, whole-file SHA-256 in manifest and trailer,
//! every tensor's range and SHA-256) live in `deepsearch_proto::weights`, shared with the
//! learner's server; this is the actor's call of it with its deadline and error type.

use std::time::Duration;

use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::{download_and_verify_with, DownloadOptions};
use pb::learner_service_client::LearnerServiceClient;
use tonic::transport::Channel;

use crate::runtime::ActorError;

/// A downloaded, verified weights file.
#[derive(Clone, Debug)]
pub struct VerifiedWeights {
    pub version: u64,
    /// The safetensors file.
    pub bytes: Vec<u8>,
    /// The model's `config.json` as the learner sent it.
    pub config_json: String,
}

/// Downloads `version` (0 = the newest the learner keeps) within `deadline` and verifies it.
pub async fn download_weights(
    client: &mut LearnerServiceClient<Channel>,
    version: u64,
    chunk_bytes: u32,
    deadline: Duration,
) -> Result<VerifiedWeights, ActorError> {
    let opts = DownloadOptions {
        chunk_bytes,
        timeout: deadline,
    };
    let (version, bytes, manifest) = download_and_verify_with(client, version, &opts)
        .await
        .map_err(|e| ActorError::Weights(e.to_string()))?;
    Ok(VerifiedWeights {
        version,
        bytes,
        config_json: manifest.config_json,
    })
}
