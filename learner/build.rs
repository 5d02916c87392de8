include!("../scripts/torch-rpath.rs");
fn main() {
    emit_torch_rpath();
}
