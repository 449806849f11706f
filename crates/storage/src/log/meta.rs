//! A stream's metadata file, `<stream-id:020>/stream.json`, replaced
//! whole (temporary file, fsync, rename, fsync of the directory) on every
//! change, so a crash leaves the old version or the new one.

use std::io::Write;
use std::path::Path;

use ferry_core::store::StoreError;
use ferry_core::stream::{CONFIG_KEYS, StreamConfig, StreamMeta};
use serde_json::{Map, Value, json};

use crate::journal::io_error;

pub const FILE: &str = "stream.json";
const VERSION: u64 = 1;

pub fn encode(m: &StreamMeta) -> Vec<u8> {
    let config: Map<String, Value> = m
        .config
        .entries()
        .into_iter()
        .map(|(k, v, _)| (k.to_owned(), Value::String(v)))
        .collect();
    let v = json!({
        "format": VERSION,
        "id": m.id,
        "namespace": m.namespace,
        "name": m.name,
        "topic_id": format!("{:032x}", m.topic_id),
        "partitions": m.partitions,
        "created_ms": m.created_ms,
        "config": config,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

pub fn decode(b: &[u8], path: &Path) -> Result<StreamMeta, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        file: path.display().to_string(),
        offset: 0,
        detail,
    };
    let v: Value = serde_json::from_slice(b).map_err(|e| corrupt(e.to_string()))?;
    let format = v["format"].as_u64().unwrap_or(0);
    if format == 0 || format > VERSION {
        return Err(corrupt(format!(
            "format {format}; this build reads 1 to {VERSION}"
        )));
    }
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| corrupt(format!("{k} is missing")))
    };
    let n = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| corrupt(format!("{k} is missing")))
    };
    let mut config = StreamConfig::default();
    if let Some(c) = v["config"].as_object() {
        for (k, val) in c {
            if !CONFIG_KEYS.contains(&k.as_str()) {
                continue;
            }
            let text = val.as_str().unwrap_or_default();
            config.set(k, text).map_err(corrupt)?;
        }
    }
    Ok(StreamMeta {
        id: n("id")?,
        namespace: s("namespace")?,
        name: s("name")?,
        topic_id: u128::from_str_radix(&s("topic_id")?, 16).map_err(|e| corrupt(e.to_string()))?,
        partitions: u32::try_from(n("partitions")?).map_err(|e| corrupt(e.to_string()))?,
        created_ms: n("created_ms")?,
        config,
    })
}

pub fn write(dir: &Path, m: &StreamMeta) -> Result<(), StoreError> {
    let path = dir.join(FILE);
    let tmp = dir.join("stream.json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(&encode(m))
        .and_then(|()| f.sync_data())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    crate::segment::sync_dir(dir).map_err(|e| io_error(dir, e))
}

pub fn read(dir: &Path) -> Result<StreamMeta, StoreError> {
    let path = dir.join(FILE);
    let b = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    decode(&b, &path)
}
