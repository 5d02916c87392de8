//! Compiles `deepsearch/v1/*.proto` with the vendored `protoc` and writes the file descriptor set
//! used by gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded, so setting the variable cannot race a reader.
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "deepsearch/v1/types.proto",
        "deepsearch/v1/coordinator.proto",
        "deepsearch/v1/learner.proto",
        "deepsearch/v1/learner_rendezvous.proto",
        "deepsearch/v1/admin.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("deepsearch_v1_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    Ok(())
}
