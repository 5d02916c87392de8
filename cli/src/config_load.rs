//! `--config FILE --set a.b=c` for the role commands and `deepsearch train`, and their shared
//! Ctrl-C/SIGTERM shutdown signal (`deepsearch actor | learner | coordinator`;
//! design.md "Config: TOML + `--set a.b=c` overrides"; issue #6 item 7).
//!
//! Layers, each deep-merged over the one before (tables merge key by key, anything else
//! replaces): the config type's `Default` serialised to TOML, the file, then every `--set` in
//! order. Merging tables rather than letting serde fill missing fields keeps a file or a `--set`
//! that names one key of a section from resetting that section's other keys. Unknown keys stay
//! errors (the types deny them) and every error names the file, the `--set`s and the key.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `T` from `file` (if any) layered over `T::default()`, then applies `sets` ("a.b=c",
/// the value parsed as TOML, else taken as a string).
pub fn load<T: Default + Serialize + DeserializeOwned>(file: Option<&Path>, sets: &[String]) -> anyhow::Result<T> {
    load_labelled(file, sets, "the defaults")
}

/// [`load`], with `defaults` naming `T::default()` in errors when no file is given.
pub fn load_labelled<T: Default + Serialize + DeserializeOwned>(file: Option<&Path>, sets: &[String], defaults: &str) -> anyhow::Result<T> {
    let source = file.map(|p| p.display().to_string()).unwrap_or_else(|| defaults.to_string());
    let mut root = match toml::Value::try_from(T::default()).with_context(|| format!("serialising {defaults}"))? {
        toml::Value::Table(t) => t,
        _ => bail!("{defaults}: not a TOML table"),
    };
    if let Some(p) = file {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let table = text.parse::<toml::Table>().with_context(|| format!("parsing {}", p.display()))?;
        merge(&mut root, table);
    }
    for s in sets {
        let (k, v) = s.split_once('=').with_context(|| format!("--set `{s}`: expected key=value"))?;
        set_key(&mut root, k.trim(), v.trim())?;
    }
    // Deserialising the merged text (not the value) makes toml point at the offending line.
    let text = toml::to_string(&root).context("serialising the merged config")?;
    toml::from_str::<T>(&text).map_err(|e| {
        let with = if sets.is_empty() { String::new() } else { format!(" with --set {sets:?}") };
        anyhow::anyhow!("{source}{with}: {}", e.to_string().trim_end())
    })
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends): the clean-shutdown signal of every
/// role command.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Sets the dotted `path` in `root` to `value` (parsed as a TOML value, else taken as a string).
pub fn set_key(root: &mut toml::Table, path: &str, value: &str) -> anyhow::Result<()> {
    let parsed: toml::Value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.into()),
    };
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {path}={value}: empty key segment");
    }
    let mut t = root;
    for p in &parts[..parts.len() - 1] {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().with_context(|| format!("--set {path}: `{p}` is not a table"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        a: u32,
        b: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    impl Default for Outer {
        fn default() -> Self {
            Outer { name: "n".into(), inner: Inner { a: 7, b: "keep".into() } }
        }
    }

    #[test]
    fn file_and_sets_layer_over_the_defaults_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[inner]\na = 3\n").unwrap();
        // the file sets inner.a only: inner.b keeps the type's default, not String::default()
        let c: Outer = load(Some(&p), &[]).unwrap();
        assert_eq!(c, Outer { name: "n".into(), inner: Inner { a: 3, b: "keep".into() } });
        let c: Outer = load(Some(&p), &["inner.b=x y".into(), "name=\"q\"".into(), "inner.a=9".into()]).unwrap();
        assert_eq!(c, Outer { name: "q".into(), inner: Inner { a: 9, b: "x y".into() } });
        let c: Outer = load(None, &[]).unwrap();
        assert_eq!(c, Outer::default());
    }

    #[test]
    fn errors_name_the_file_the_sets_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[inner]\naa = 3\n").unwrap();
        let e = format!("{:#}", load::<Outer>(Some(&p), &[]).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("aa"), "{e}");
        std::fs::write(&p, "").unwrap();
        let e = format!("{:#}", load::<Outer>(Some(&p), &["inner.a=\"many\"".into()]).unwrap_err());
        assert!(e.contains("c.toml with --set") && e.contains("a = \"many\""), "{e}");
        let e = format!("{:#}", load::<Outer>(Some(&p), &["name.x=1".into()]).unwrap_err());
        assert!(e.contains("`name` is not a table"), "{e}");
        assert!(load::<Outer>(Some(&p), &["novalue".into()]).is_err());
        let e = format!("{:#}", load::<Outer>(Some(&dir.path().join("missing.toml")), &[]).unwrap_err());
        assert!(e.contains("missing.toml"), "{e}");
    }
}
