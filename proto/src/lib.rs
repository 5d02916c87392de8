//! The gRPC protocol of DeepSearch, package `deepsearch.v1` (design.md "Roles and data flow").
//!
//! One service per `.proto` file under `deepsearch/v1/`: [`v1::coordinator_service_server`]
//! (actors and the learner talk to the coordinator), [`v1::learner_service_server`] (actors stream
//! trajectories to the learner and fetch weights), [`v1::learner_rendezvous_server`] (learner ranks
//! other than 0 join rank 0 and follow its steps) and [`v1::admin_service_server`] (operators).
//! Shared messages live in `types.proto`. This crate holds only generated code and the descriptor
//! set for server reflection; validation into domain types happens at each server's edge.

/// Generated messages, clients and servers of package `deepsearch.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("deepsearch.v1");
}

/// Weights manifests, chunked download streams and verified reassembly (pure; no libtorch).
pub mod weights;

/// Encoded `FileDescriptorSet` of every `deepsearch.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("deepsearch_v1_descriptor");
