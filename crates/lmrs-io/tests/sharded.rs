//! A checkpoint split into shards with `model.safetensors.index.json` loads the same tensors
//! as the single file, and a shard listed but missing is named.

use lmrs_core::{DType, Device};
use lmrs_io::{ModelFiles, Weights};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/t5-v1_0-tiny")
}

/// Split the fixture's tensors over two shard files plus an index, like `save_pretrained`
/// with a small `max_shard_size`.
fn write_sharded(dir: &Path) -> Vec<String> {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut weight_map = BTreeMap::new();
    for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None::<HashMap<String, String>>, &dir.join(&file))
            .unwrap();
        for n in part {
            weight_map.insert(n.clone(), file.clone());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    for f in ["config.json", "tokenizer.json", "generation_config.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    names
}

#[test]
fn sharded_checkpoint_loads_like_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let names = write_sharded(tmp.path());
    let files = ModelFiles::from_folder(tmp.path()).unwrap();
    assert_eq!(files.weights.len(), 2);
    let sharded = Weights::from_files(&files.weights, &Device::Cpu, DType::F32).unwrap();
    let single_files = ModelFiles::from_folder(&fixture()).unwrap();
    let single = Weights::from_files(&single_files.weights, &Device::Cpu, DType::F32).unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for n in &names {
        let shape = st.tensor(n).unwrap().shape().to_vec();
        let a = sharded
            .get(n, &shape)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = single
            .get(n, &shape)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{n}");
    }
}

#[test]
fn missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_sharded(tmp.path());
    std::fs::remove_file(tmp.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = ModelFiles::from_folder(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
}
