// Shared build-script body (included by every crate whose binaries or tests link libtorch):
// embeds an rpath to the libtorch shipped in .venv so binaries run without LD_LIBRARY_PATH.
fn emit_torch_rpath() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&dir).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // The nvidia-* wheels (cuda runtime, cupti, nccl) live beside torch in site-packages.
        if let Some(site) = std::path::Path::new(&dir).parent() {
            for sub in ["nvidia/cu13/lib", "nvidia/cuda_runtime/lib", "nvidia/cuda_cupti/lib", "nvidia/nccl/lib"] {
                let p = site.join(sub);
                if p.is_dir() {
                    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", p.display());
                }
            }
        }
    }
}
