//! Bad input gives a clear error naming the file and the field or tensor, never a panic:
//! missing / malformed config.json, a missing config field, a missing, mis-shaped or unexpected
//! tensor, a tokenizer larger than `vocab_size`, an unknown device or dtype, an out-of-range
//! token id, a shard index naming a missing file.

mod common;

use common::*;
use deepsearch_policy::{device::parse_device, PolicyModel};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind};

/// A copy of the tied fixture (vocab 64, hidden 32) to break.
fn copy_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture("tied")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    tmp
}

fn load_err(dir: &Path) -> String {
    PolicyModel::load(dir, Device::Cpu, Kind::Float).unwrap_err().to_string()
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Rewrites model.safetensors through `f` (name → (shape, f32 values)).
fn edit_weights(dir: &Path, f: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<f32>)>)) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut map: HashMap<String, (Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals = v.data().chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect();
    f(&mut map);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = map
        .into_iter()
        .map(|(n, (s, v))| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(&p, safetensors::serialize(views, &None).unwrap()).unwrap();
}

#[test]
fn missing_config_json_names_the_file() {
    let d = copy_fixture();
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    let err = load_err(d.path());
    assert!(err.contains("config.json") && err.contains("cannot read"), "{err}");
}

#[test]
fn malformed_config_json_names_the_file_and_position() {
    let d = copy_fixture();
    std::fs::write(d.path().join("config.json"), "{\"vocab_size\": 64,,}").unwrap();
    let err = load_err(d.path());
    assert!(err.contains("config.json") && err.contains("invalid JSON") && err.contains("line 1"), "{err}");
}

#[test]
fn config_missing_or_ill_typed_field_is_named() {
    let d = copy_fixture();
    edit_config(d.path(), |c| {
        c.remove("hidden_size");
    });
    let err = load_err(d.path());
    assert!(err.contains("config.json") && err.contains("`hidden_size`") && err.contains("missing"), "{err}");
    edit_config(d.path(), |c| {
        c.insert("hidden_size".into(), serde_json::json!("wide"));
    });
    let err = load_err(d.path());
    assert!(err.contains("config.json") && err.contains("`hidden_size`") && err.contains("expected an integer"), "{err}");
    // a RoPE variant the forward does not implement is rejected, not silently ignored
    edit_config(d.path(), |c| {
        c.insert("hidden_size".into(), serde_json::json!(32));
        c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
    });
    let err = load_err(d.path());
    assert!(err.contains("rope_parameters") && err.contains("yarn"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let d = copy_fixture();
    edit_weights(d.path(), |m| {
        m.remove("model.layers.1.self_attn.k_proj.bias");
    });
    let err = load_err(d.path());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("`model.layers.1.self_attn.k_proj.bias`") && err.contains("missing"), "{err}");
}

#[test]
fn mis_shaped_tensor_reports_expected_and_got() {
    let d = copy_fixture();
    edit_weights(d.path(), |m| {
        m.insert("model.norm.weight".into(), (vec![31], vec![1.0; 31]));
    });
    let err = load_err(d.path());
    assert!(err.contains("model.safetensors") && err.contains("`model.norm.weight`"), "{err}");
    assert!(err.contains("expected [32], got [31]"), "{err}");
}

#[test]
fn unexpected_tensor_is_an_error_but_tied_lm_head_is_accepted() {
    let d = copy_fixture();
    edit_weights(d.path(), |m| {
        let emb = m["model.embed_tokens.weight"].clone();
        m.insert("lm_head.weight".into(), emb);
    });
    PolicyModel::load(d.path(), Device::Cpu, Kind::Float).expect("tied lm_head.weight is skipped");
    edit_weights(d.path(), |m| {
        m.insert("model.layers.9.mlp.up_proj.weight".into(), (vec![2], vec![0.0; 2]));
    });
    let err = load_err(d.path());
    assert!(err.contains("`model.layers.9.mlp.up_proj.weight`") && err.contains("unexpected tensor"), "{err}");
}

#[test]
fn tokenizer_larger_than_vocab_size_is_rejected() {
    let d = copy_fixture();
    edit_config(d.path(), |c| {
        c.insert("vocab_size".into(), serde_json::json!(40));
    });
    let err = load_err(d.path());
    assert!(err.contains("tokenizer.json") && err.contains("48 ids") && err.contains("`vocab_size` 40"), "{err}");
}

#[test]
fn missing_weights_and_shards_are_named() {
    let d = copy_fixture();
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let err = load_err(d.path());
    assert!(err.contains("model.safetensors") && err.contains("model.safetensors.index.json"), "{err}");
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let err = load_err(d.path());
    assert!(err.contains("model-00001-of-00002.safetensors") && err.contains("cannot read"), "{err}");
}

#[test]
fn unknown_device_and_dtype_are_errors() {
    let err = parse_device("tpu:0").unwrap_err().to_string();
    assert!(err.contains("unknown device `tpu:0`"), "{err}");
    let err = PolicyModel::load_with(&fixture("tied"), "gpu", "float32").unwrap_err().to_string();
    assert!(err.contains("unknown device `gpu`"), "{err}");
    let err = PolicyModel::load_with(&fixture("tied"), "cpu", "int4").unwrap_err().to_string();
    assert!(err.contains("dtype") && err.contains("int4"), "{err}");
}

#[test]
fn out_of_range_token_ids_are_rejected_before_forward() {
    let m = PolicyModel::load(&fixture("tied"), Device::Cpu, Kind::Float).unwrap();
    m.check_token_ids(&[0, 5, 63]).unwrap();
    let err = m.check_token_ids(&[3, 64]).unwrap_err().to_string();
    assert_eq!(err, "token id 64 out of range for vocabulary of 64");
    let err = m.check_token_ids(&[-1]).unwrap_err().to_string();
    assert!(err.contains("token id -1"), "{err}");
}
