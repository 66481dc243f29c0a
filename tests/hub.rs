//! Hugging Face Hub model ids (`owner/name`) as model folders, against a local mock hub
//! (tests/support/mock_hub.rs) reached through `HF_ENDPOINT`-style settings: download into the
//! cache, a cache hit on the next run, offline mode, sharded safetensors, and the Hub's
//! refusals (404, 401) and unusable repositories, each with a clear error. The last test starts
//! the real `mario-server` on a Hub id, then again offline from the cache.

mod common;
#[path = "support/mock_hub.rs"]
mod mock_hub;
#[path = "support/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::fixture_dir;
use mario::checkpoint::Checkpoint;
use mario::hub::{resolve_model_with, HubError, HubSettings, ModelSource};
use mock_hub::{MockHub, MockRepo};
use serde_json::{json, Value};

const ID: &str = "some-org/some-t5";

fn settings(hub: &MockHub, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub.url.clone(),
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: false,
        progress: false,
    }
}

/// The tiny fixture checkpoint as a Hub repository, with a README and a file that is not
/// part of a model folder (neither is downloaded).
fn fixture_repo() -> MockRepo {
    let mut repo = MockRepo::from_dir(&fixture_dir("t5-v1_0-tied"));
    repo.files
        .insert("README.md".into(), b"# some-t5\n".to_vec());
    repo.files.insert(
        "generation_config.json".into(),
        br#"{"no_repeat_ngram_size": 2}"#.to_vec(),
    );
    repo
}

fn hub_with(repos: Vec<(&str, MockRepo)>) -> MockHub {
    MockHub::start(repos.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Resolve requests to file downloads (metadata and content) of the mock hub.
fn downloads(hub: &MockHub) -> Vec<String> {
    hub.requests()
        .into_iter()
        .filter(|r| r.contains("/resolve/"))
        .collect()
}

#[test]
fn a_hub_id_is_downloaded_once_then_served_from_the_cache_and_offline() {
    let hub = hub_with(vec![(ID, fixture_repo())]);
    let cache = tempfile::tempdir().unwrap();
    let s = settings(&hub, cache.path());

    let first = resolve_model_with(Path::new(ID), "main", &s).unwrap();
    let commit = fixture_repo().commit;
    assert_eq!(
        first.source,
        ModelSource::Hub {
            repo: ID.into(),
            revision: "main".into(),
            commit: commit.clone()
        }
    );
    assert_eq!(first.name(), ID);
    // the Hub's cache layout, shared with the Python tools
    let repo_dir = cache.path().join("models--some-org--some-t5");
    assert_eq!(first.dir, repo_dir.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    let ckpt = Checkpoint::load(&first.dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(ckpt.generation.no_repeat_ngram_size, Some(2));
    let fetched = downloads(&hub);
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "generation_config.json",
    ] {
        assert!(
            fetched.iter().any(|r| r.ends_with(&format!("/{f}"))),
            "{f} not fetched: {fetched:?}"
        );
    }
    // files are fetched at the commit the revision named, so all come from one commit
    assert!(
        fetched
            .iter()
            .all(|r| r.contains(&format!("/resolve/{commit}/"))),
        "{fetched:?}"
    );
    for f in ["README.md", "reference.json"] {
        assert!(
            !fetched.iter().any(|r| r.ends_with(f)),
            "{f} fetched: {fetched:?}"
        );
    }
    assert_eq!(hub.count("/api/models/some-org/some-t5/revision/main"), 1);

    // second run: one look at which commit `main` names, no download
    let before = hub.requests().len();
    let second = resolve_model_with(Path::new(ID), "main", &s).unwrap();
    assert_eq!(second, first);
    let new: Vec<String> = hub.requests()[before..].to_vec();
    assert_eq!(
        new,
        ["GET /api/models/some-org/some-t5/revision/main"],
        "a cache hit downloads nothing"
    );

    // the revision given as the commit: complete in the cache, no request at all
    let before = hub.requests().len();
    let pinned = resolve_model_with(Path::new(ID), &commit, &s).unwrap();
    assert_eq!(pinned.dir, first.dir);
    assert_eq!(hub.requests().len(), before);

    // offline: the cache only, not one request
    let offline = HubSettings {
        offline: true,
        ..s.clone()
    };
    let before = hub.requests().len();
    let third = resolve_model_with(Path::new(ID), "main", &offline).unwrap();
    assert_eq!(third, first);
    assert_eq!(hub.requests().len(), before, "offline mode made a request");

    // offline with a cache that does not hold the model: a clear error, no request
    let empty = tempfile::tempdir().unwrap();
    let err = resolve_model_with(
        Path::new(ID),
        "main",
        &HubSettings {
            cache_dir: empty.path().to_path_buf(),
            ..offline.clone()
        },
    )
    .unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(ID) && msg.contains("HF_HUB_OFFLINE") && msg.contains("not in the"),
        "{msg}"
    );
    assert_eq!(hub.requests().len(), before);

    // a hub that does not answer: the cached snapshot is used
    drop(hub);
    let again = resolve_model_with(Path::new(ID), "main", &s).unwrap();
    assert_eq!(again, first);
}

/// Splits a safetensors file's tensors over two shards and writes the index.
fn shard(src: &Path) -> BTreeMap<String, Vec<u8>> {
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let tmp = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    let half = names.len() / 2;
    for (i, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let map: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        let path = tmp.path().join(&file);
        candle_core::safetensors::save(&map, &path).unwrap();
        files.insert(file.clone(), std::fs::read(&path).unwrap());
        for n in part.iter() {
            weight_map.insert((*n).clone(), json!(file));
        }
    }
    files.insert(
        "model.safetensors.index.json".into(),
        json!({"metadata": {}, "weight_map": weight_map})
            .to_string()
            .into_bytes(),
    );
    files
}

#[test]
fn a_sharded_repository_is_downloaded_whole_and_loads_like_the_single_file() {
    let fixture = fixture_dir("t5-v1_1-gated");
    let mut repo = MockRepo::from_dir(&fixture);
    repo.files.remove("model.safetensors");
    repo.files.extend(shard(&fixture.join("model.safetensors")));
    let hub = hub_with(vec![("some-org/sharded-t5", repo)]);
    let cache = tempfile::tempdir().unwrap();
    let s = settings(&hub, cache.path());
    let m = resolve_model_with(Path::new("some-org/sharded-t5"), "main", &s).unwrap();
    for f in [
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert!(m.dir.join(f).is_file(), "{f}");
    }
    assert!(!m.dir.join("model.safetensors").exists());

    let sharded = Checkpoint::load(&m.dir, DType::F32, &Device::Cpu).unwrap();
    let single = Checkpoint::load(&fixture, DType::F32, &Device::Cpu).unwrap();
    let ids = single
        .tokenizer
        .encode("Would a pear sink in water?")
        .unwrap();
    let run = |c: &Checkpoint| {
        let req = mario::generate::GenerationRequest {
            input_ids: ids.clone(),
            prefix: vec![],
            params: mario::generate::GenerationParams {
                max_new_tokens: 8,
                ..Default::default()
            },
        };
        mario::generate::generate(&c.model, &c.tokenizer, &[req]).unwrap()[0]
            .text
            .clone()
    };
    assert_eq!(run(&sharded), run(&single));

    // complete in the cache: the next run downloads nothing
    let before = downloads(&hub).len();
    resolve_model_with(Path::new("some-org/sharded-t5"), "main", &s).unwrap();
    assert_eq!(downloads(&hub).len(), before);
}

#[test]
fn the_hubs_refusals_and_unusable_repositories_are_clear_errors() {
    let mut private = fixture_repo();
    private.token = Some("hf_secret".into());
    let mut no_safetensors = fixture_repo();
    let weights = no_safetensors.files.remove("model.safetensors").unwrap();
    no_safetensors
        .files
        .insert("pytorch_model.bin".into(), weights);
    let mut no_tokenizer = fixture_repo();
    no_tokenizer.files.remove("tokenizer.json");
    let hub = hub_with(vec![
        ("some-org/private-t5", private),
        ("some-org/bin-only-t5", no_safetensors),
        ("some-org/no-tokenizer-t5", no_tokenizer),
        (ID, fixture_repo()),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let s = settings(&hub, cache.path());
    let resolve = |id: &str, rev: &str, s: &HubSettings| {
        resolve_model_with(Path::new(id), rev, s).map(|m| m.dir)
    };

    // 404: an unknown repository, or a revision it does not have
    let err = resolve("some-org/no-such-t5", "main", &s).unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("some-org/no-such-t5") && msg.contains("404") && msg.contains(&hub.url),
        "{msg}"
    );
    let err = resolve(ID, "no-such-branch", &s).unwrap_err();
    assert!(
        matches!(err, HubError::NotFound { .. }) && err.to_string().contains("no-such-branch"),
        "{err}"
    );

    // 401: a private repository without a token, or with a wrong one; the right one works
    let err = resolve("some-org/private-t5", "main", &s).unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("401") && err.to_string().contains("HF_TOKEN"),
        "{err}"
    );
    let wrong = HubSettings {
        token: Some("hf_wrong".into()),
        ..s.clone()
    };
    let err = resolve("some-org/private-t5", "main", &wrong).unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { .. }) && err.to_string().contains("not accepted"),
        "{err}"
    );
    let right = HubSettings {
        token: Some("hf_secret".into()),
        ..s.clone()
    };
    let dir = resolve("some-org/private-t5", "main", &right).unwrap();
    Checkpoint::load(&dir, DType::F32, &Device::Cpu).unwrap();

    // repositories that are not servable: named, with what they have instead
    let err = resolve("some-org/bin-only-t5", "main", &s).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::Unusable { .. }), "{msg}");
    assert!(
        msg.contains("no safetensors") && msg.contains("pytorch_model.bin"),
        "{msg}"
    );
    let err = resolve("some-org/no-tokenizer-t5", "main", &s).unwrap_err();
    assert!(
        matches!(err, HubError::Unusable { .. }) && err.to_string().contains("tokenizer.json"),
        "{err}"
    );
    // nothing of them was downloaded
    assert_eq!(hub.count("/bin-only-t5/resolve/"), 0);
    assert_eq!(hub.count("/no-tokenizer-t5/resolve/"), 0);

    // a path that is neither a folder nor an id: no request
    let before = hub.requests().len();
    let err = resolve("./not/a/model", "main", &s).unwrap_err();
    assert!(matches!(err, HubError::NotAModel(_)), "{err}");
    assert_eq!(hub.requests().len(), before);
}

/// The acceptance test: `mario-server --model some-org/some-t5` downloads the fixture model
/// through the mock hub and serves it; a second start with `HF_HUB_OFFLINE=1` (the hub gone)
/// serves it from the cache.
#[test]
fn mario_server_serves_a_hub_id_then_serves_it_offline_from_the_cache() {
    let hub = hub_with(vec![(ID, fixture_repo())]);
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mario-server"));
    let hf_home = home.path().to_str().unwrap();
    let question =
        json!({"question": "Would a pear sink in water?", "parameters": {"max_new_tokens": 8}});

    let answer = {
        let mut s = process::serving(
            &exe,
            &["--model", ID],
            &[("HF_ENDPOINT", &hub.url), ("HF_HOME", hf_home)],
            cwd.path(),
        );
        let (st, info) = s.get("/info");
        assert_eq!(st, 200, "{info}");
        let info: Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["model"], ID, "{info}");
        let (st, body) = s.post("/rationalize", &question);
        assert_eq!(st, 200, "{body}");
        let log = s.stderr();
        assert!(log.contains("some-org/some-t5@main (commit"), "{log}");
        serde_json::from_str::<Value>(&body).unwrap()["results"][0]["text"].clone()
    };
    assert!(hub.count("/resolve/") > 0);
    assert!(home
        .path()
        .join("hub/models--some-org--some-t5/refs/main")
        .is_file());
    let url = hub.url.clone();
    drop(hub);

    let s = process::serving(
        &exe,
        &["--model", ID],
        &[
            ("HF_ENDPOINT", &url),
            ("HF_HOME", hf_home),
            ("HF_HUB_OFFLINE", "1"),
        ],
        cwd.path(),
    );
    let (st, body) = s.post("/rationalize", &question);
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["results"][0]["text"],
        answer
    );
    let (_, info) = s.get("/info");
    assert_eq!(serde_json::from_str::<Value>(&info).unwrap()["model"], ID);
    drop(s);

    // offline with an empty cache: exit 2 and the reason
    let empty = tempfile::tempdir().unwrap();
    match process::start_server(
        &exe,
        &["--model", ID],
        &[
            ("HF_HOME", empty.path().to_str().unwrap()),
            ("HF_HUB_OFFLINE", "1"),
        ],
        cwd.path(),
        std::time::Duration::from_secs(60),
    ) {
        process::Started::Exited(code, log) => {
            assert_eq!(code, Some(2), "{log}");
            assert!(log.contains("HF_HUB_OFFLINE") && log.contains(ID), "{log}");
        }
        process::Started::Serving(_) => panic!("served a model that is not in the cache"),
    }
}
