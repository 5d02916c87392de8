//! Save/load round trips: load → save → load gives identical logits, single-file and sharded
//! checkpoints both load, tied models write no `lm_head.weight`, and a model saved in bf16
//! loads back into f32. Also writes the folder `fixtures/check_rust_export.py` checks with
//! transformers when `DEEPSEARCH_PY_EXPORT` names a directory (Python is not needed here).

mod common;

use common::*;
use deepsearch_policy::{PolicyModel, SaveOptions};
use std::path::Path;
use tch::{Device, Kind};

const PROMPT: [i64; 9] = [5, 6, 15, 7, 8, 19, 20, 3, 4];

fn weight_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".safetensors") || n.ends_with(".index.json"))
        .collect();
    v.sort();
    v
}

#[test]
fn hf_fixture_load_save_load_gives_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let a = PolicyModel::load(&fixture("untied"), Device::Cpu, Kind::Float).unwrap();
    a.save(tmp.path(), &SaveOptions::default()).unwrap();
    let b = PolicyModel::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(max_abs_diff(&logits_of(&a.model, &PROMPT), &logits_of(&b.model, &PROMPT)), 0.0);
    assert_eq!(b.eos_ids, vec![0]);
    assert_eq!(b.cfg, a.cfg);
    // unknown config fields survive; the saved config names the architecture
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(cfg["model_type"], "qwen2");
    assert_eq!(cfg["torch_dtype"], "float32");
    assert_eq!(cfg["rope_parameters"]["rope_theta"], 1e6);
    assert_eq!(cfg["max_window_layers"], 28);
    // the chat template (tokenizer_config.json) survives too
    assert!(b.tokenizer.chat_template().is_some());
    // no temp files left behind
    assert!(std::fs::read_dir(tmp.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp")));
}

#[test]
fn sharded_and_single_file_checkpoints_load_to_the_same_model() {
    let m = tiny_model(false, 7);
    let want = logits_of(&m.model, &PROMPT);
    let tmp = tempfile::tempdir().unwrap();
    let opts = SaveOptions { dtype: None, max_shard_bytes: 40_000 };
    m.save(tmp.path(), &opts).unwrap();
    let files = weight_files(tmp.path());
    assert!(files.len() > 3, "expected several shards, got {files:?}");
    assert!(files.contains(&"model.safetensors.index.json".to_string()));
    assert!(!files.contains(&"model.safetensors".to_string()));
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(index["weight_map"].as_object().unwrap().len(), m.vs.variables().len());
    let sharded = PolicyModel::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(max_abs_diff(&want, &logits_of(&sharded.model, &PROMPT)), 0.0);
    // re-saving single-file into the same folder removes the shards and the index
    sharded.save(tmp.path(), &SaveOptions::default()).unwrap();
    assert_eq!(weight_files(tmp.path()), vec!["model.safetensors".to_string()]);
    let single = PolicyModel::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(max_abs_diff(&want, &logits_of(&single.model, &PROMPT)), 0.0);
}

#[test]
fn tied_models_write_no_lm_head_and_init_is_seeded() {
    let m = tiny_model(true, 3);
    assert!(!m.vs.variables().contains_key("lm_head.weight"));
    let tmp = tempfile::tempdir().unwrap();
    m.save(tmp.path(), &SaveOptions::default()).unwrap();
    let bytes = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().iter().all(|n| *n != "lm_head.weight"));
    assert_eq!(st.names().len(), m.vs.variables().len());
    // same seed → same weights; other seed → different
    let again = tiny_model(true, 3);
    let other = tiny_model(true, 4);
    let (a, b, c) = (logits_of(&m.model, &PROMPT), logits_of(&again.model, &PROMPT), logits_of(&other.model, &PROMPT));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(max_abs_diff(&a, &c) > 0.0);
    // the init follows HF: std ≈ initializer_range, unit norms
    let emb = &m.vs.variables()["model.embed_tokens.weight"];
    let std = emb.std(true).double_value(&[]);
    assert!((std - 0.02).abs() < 0.002, "embedding std {std}");
    assert_eq!(m.vs.variables()["model.norm.weight"].mean(Kind::Float).double_value(&[]), 1.0);
}

#[test]
fn bf16_save_loads_back_into_f32_and_bf16() {
    let m = tiny_model(false, 11);
    let tmp = tempfile::tempdir().unwrap();
    m.save(tmp.path(), &SaveOptions { dtype: Some(Kind::BFloat16), ..Default::default() }).unwrap();
    let bytes = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("model.norm.weight").unwrap().dtype(), safetensors::Dtype::BF16);
    let as_f32 = PolicyModel::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(as_f32.vs.variables()["model.norm.weight"].kind(), Kind::Float);
    let as_bf16 = PolicyModel::load(tmp.path(), Device::Cpu, Kind::BFloat16).unwrap();
    // the f32 model holds exactly the bf16 values
    let w32 = &as_f32.vs.variables()["model.layers.0.mlp.up_proj.weight"];
    let w16 = &as_bf16.vs.variables()["model.layers.0.mlp.up_proj.weight"];
    assert_eq!(max_abs_diff(w32, w16), 0.0);
    let d = max_abs_diff(&logits_of(&m.model, &PROMPT), &logits_of(&as_f32.model, &PROMPT));
    assert!(d < 1e-2, "bf16 rounding moved logits by {d}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
}

/// Writes checkpoints plus reference logits for `fixtures/check_rust_export.py`:
/// `DEEPSEARCH_PY_EXPORT=/some/dir cargo test -p deepsearch-policy --test checkpoint_roundtrip export`
/// then `/work/pyref/bin/python policy/tests/fixtures/check_rust_export.py /some/dir`.
/// Without the variable it writes to a temp dir and checks the files reload.
#[test]
fn export_for_python_check() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("DEEPSEARCH_PY_EXPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let text = "12+3=15\n(4 * 5) = 20 abc 2×3";
    for (name, tied, shard, dtype) in [
        ("tied_single_f32", true, u64::MAX, Kind::Float),
        ("untied_sharded_bf16", false, 30_000, Kind::BFloat16),
    ] {
        let m = tiny_model(tied, 21);
        let dir = root.join(name);
        m.save(&dir, &SaveOptions { dtype: Some(dtype), max_shard_bytes: shard }).unwrap();
        // logits of the model as saved (bf16 weights read back into f32)
        let saved = PolicyModel::load(&dir, Device::Cpu, Kind::Float).unwrap();
        let ids = saved.tokenizer.encode(text, false).unwrap();
        assert_eq!(saved.tokenizer.decode(&ids, false).unwrap(), text);
        let logits = logits_of(&saved.model, &ids);
        let rows: Vec<Vec<f32>> = (0..ids.len() as i64)
            .map(|i| Vec::<f32>::try_from(logits.get(i)).unwrap())
            .collect();
        let reference = serde_json::json!({"text": text, "ids": ids, "logits": rows,
                                           "eos_ids": saved.eos_ids, "tied": tied});
        std::fs::write(dir.join("rust_reference.json"), reference.to_string()).unwrap();
    }
}
