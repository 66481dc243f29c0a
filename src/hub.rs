//! Model folders from the Hugging Face Hub: wherever a model folder is accepted, an argument
//! that is not an existing folder and looks like `owner/name` is a Hub model id, downloaded
//! (once) into the Hugging Face cache through the [`hf_hub`] crate.
//!
//! The usual conventions of the Hugging Face tools apply (see [`HubSettings::from_env`]):
//! a revision (branch, tag or commit; default `main`), the cache in `HF_HUB_CACHE` (else
//! `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, shared with Python's `huggingface_hub`),
//! `HF_HUB_OFFLINE=1` (the cache only, no network), `HF_TOKEN` (else the token file that
//! `huggingface-cli login` writes), `HF_ENDPOINT` (a mirror or a test server).
//!
//! What is downloaded: `config.json`, `tokenizer.json`, the weights (`model.safetensors`, or
//! `model.safetensors.index.json` and every shard it lists), and `generation_config.json`,
//! `mario.json` and `examples.json` when the repository has them. Online, one metadata request finds the revision's
//! commit; files already in the cache for that commit are not downloaded again.
//!
//! ```no_run
//! let dir = mario::hub::resolve_model("google/flan-t5-small".as_ref(), "main")?;
//! let ckpt = mario::checkpoint::Checkpoint::load(&dir, candle_core::DType::F32,
//!     &candle_core::Device::Cpu)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::checkpoint::{EXAMPLES_FILE, GENERATION_CONFIG_FILE};
use crate::control::CONTROL_FILE;
use crate::model::{CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use crate::tokenize::TOKENIZER_FILE;

/// The Hub's address when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// Where and how the Hub is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// Base URL (`HF_ENDPOINT`), without a trailing slash.
    pub endpoint: String,
    /// The hub cache folder (`models--owner--name/` folders live here).
    pub cache_dir: PathBuf,
    /// Bearer token for private or gated repositories.
    pub token: Option<String>,
    /// Never use the network: the cache only.
    pub offline: bool,
    /// Draw download progress bars (on a terminal).
    pub progress: bool,
}

impl HubSettings {
    /// The settings the Hugging Face tools read from the environment:
    /// - `HF_ENDPOINT` (default `https://huggingface.co`);
    /// - `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    ///   `~/.cache/huggingface/hub`;
    /// - `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token` (as written by
    ///   `huggingface-cli login`);
    /// - `HF_HUB_OFFLINE` (`1`, `true`, `yes` or `on`: cache only);
    /// - progress bars unless `HF_HUB_DISABLE_PROGRESS_BARS` is set (and only on a terminal).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let flag = |k: &str| {
            var(k).is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
        };
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("token"));
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            cache_dir,
            token,
            offline: flag("HF_HUB_OFFLINE"),
            progress: !flag("HF_HUB_DISABLE_PROGRESS_BARS")
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// Where a model folder came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder given as such.
    Folder,
    /// A Hub model id at a revision, and the commit that revision resolved to.
    Hub {
        repo: String,
        revision: String,
        commit: String,
    },
}

/// A local model folder and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The folder to load (for a Hub id: its snapshot in the cache).
    pub dir: PathBuf,
    pub source: ModelSource,
}

impl ResolvedModel {
    /// A short name: the Hub id, or the folder's name.
    pub fn name(&self) -> String {
        match &self.source {
            ModelSource::Hub { repo, .. } => repo.clone(),
            ModelSource::Folder => self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| self.dir.display().to_string()),
        }
    }

    /// For logs: the folder, or `owner/name@revision (commit …) in <dir>`.
    pub fn describe(&self) -> String {
        match &self.source {
            ModelSource::Folder => self.dir.display().to_string(),
            ModelSource::Hub {
                repo,
                revision,
                commit,
            } => format!(
                "{repo}@{revision} (commit {commit}) from the Hugging Face Hub cache at {}",
                self.dir.display()
            ),
        }
    }
}

/// Why a model argument could not be turned into a local folder.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{0}: no such folder (a model folder holds config.json, model.safetensors and \
         tokenizer.json), and not a Hugging Face Hub model id (owner/name)"
    )]
    NotAModel(PathBuf),
    #[error(
        "{arg}: not a folder here, and the Hugging Face Hub at {endpoint} has no model \
         {arg} at revision {revision} (404). Check the id and --revision; a private repository \
         also needs HF_TOKEN"
    )]
    NotFound {
        arg: String,
        revision: String,
        endpoint: String,
    },
    #[error(
        "{arg}: the Hugging Face Hub at {endpoint} refused the request (401 unauthorized): {hint}"
    )]
    Unauthorized {
        arg: String,
        endpoint: String,
        hint: &'static str,
    },
    #[error(
        "{arg}: the Hugging Face Hub at {endpoint} refused access (403 forbidden): a gated \
         model needs its terms accepted on its page, with HF_TOKEN set to that account's token"
    )]
    Forbidden { arg: String, endpoint: String },
    #[error(
        "{arg}@{revision} is not in the Hugging Face cache at {cache} and HF_HUB_OFFLINE is \
         set: run once without HF_HUB_OFFLINE to download it (or point HF_HUB_CACHE / HF_HOME \
         at the cache that holds it)"
    )]
    NotCached {
        arg: String,
        revision: String,
        cache: PathBuf,
    },
    #[error("{arg}@{revision} on the Hugging Face Hub is not usable here: {problem}")]
    Unusable {
        arg: String,
        revision: String,
        problem: String,
    },
    #[error("{arg}: downloading {file} from the Hugging Face Hub at {endpoint} failed: {source}")]
    Download {
        arg: String,
        file: String,
        endpoint: String,
        #[source]
        source: ApiError,
    },
    #[error("{arg}: {path}: {source}")]
    Io {
        arg: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `owner/name` with the Hub's rules for each part: letters, digits, `-`, `_` and `.`, not
/// starting or ending with `-` or `.`, no `--` or `..`, at most 96 characters.
pub fn looks_like_repo_id(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    matches!(s.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// A model argument as a local folder: an existing folder as it is, else a Hub model id
/// (`owner/name`) at `revision`, downloaded into the cache, with the settings of the
/// environment ([`HubSettings::from_env`]).
pub fn resolve_model(arg: &Path, revision: &str) -> Result<PathBuf, HubError> {
    Ok(resolve_model_with(arg, revision, &HubSettings::from_env())?.dir)
}

/// [`resolve_model`] with explicit settings, telling where the folder came from.
pub fn resolve_model_with(
    arg: &Path,
    revision: &str,
    settings: &HubSettings,
) -> Result<ResolvedModel, HubError> {
    if arg.is_dir() {
        return Ok(ResolvedModel {
            dir: arg.to_path_buf(),
            source: ModelSource::Folder,
        });
    }
    let id = match arg.to_str() {
        Some(s) if looks_like_repo_id(s) => s,
        _ => return Err(HubError::NotAModel(arg.to_path_buf())),
    };
    let revision = if revision.trim().is_empty() {
        DEFAULT_REVISION
    } else {
        revision
    };
    Hub {
        id,
        revision,
        settings,
    }
    .resolve()
}

struct Hub<'a> {
    id: &'a str,
    revision: &'a str,
    settings: &'a HubSettings,
}

/// A 40-hex-digit commit id (a revision that never moves).
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Hub<'_> {
    fn cache(&self) -> Cache {
        Cache::new(self.settings.cache_dir.clone())
    }

    fn repo_at(&self, revision: &str) -> Repo {
        Repo::with_revision(self.id.to_string(), RepoType::Model, revision.to_string())
    }

    /// `snapshots/<commit>/` in the cache.
    fn snapshot(&self, commit: &str) -> PathBuf {
        self.cache()
            .repo(self.repo_at(self.revision))
            .pointer_path(commit)
    }

    /// The commit the cache holds for the revision (`refs/<revision>`, or the revision itself
    /// when it is a commit with a snapshot).
    fn cached_commit(&self) -> Option<String> {
        let refs = self
            .settings
            .cache_dir
            .join(self.repo_at(self.revision).folder_name())
            .join("refs")
            .join(self.revision);
        match std::fs::read_to_string(refs) {
            Ok(c) if !c.trim().is_empty() => Some(c.trim().to_string()),
            _ => is_commit(self.revision).then(|| self.revision.to_string()),
        }
    }

    fn done(&self, commit: &str) -> ResolvedModel {
        ResolvedModel {
            dir: self.snapshot(commit),
            source: ModelSource::Hub {
                repo: self.id.to_string(),
                revision: self.revision.to_string(),
                commit: commit.to_string(),
            },
        }
    }

    fn resolve(&self) -> Result<ResolvedModel, HubError> {
        let cached = self.cached_commit().filter(|c| complete(&self.snapshot(c)));
        if self.settings.offline {
            return match cached {
                Some(c) => Ok(self.done(&c)),
                None => Err(HubError::NotCached {
                    arg: self.id.to_string(),
                    revision: self.revision.to_string(),
                    cache: self.settings.cache_dir.clone(),
                }),
            };
        }
        // a commit never changes: its complete snapshot needs no request
        if let Some(c) = cached
            .as_ref()
            .filter(|c| is_commit(self.revision) && *c == self.revision)
        {
            return Ok(self.done(c));
        }
        let api = ApiBuilder::from_cache(self.cache())
            .with_endpoint(self.settings.endpoint.clone())
            .with_token(self.settings.token.clone())
            .with_progress(self.settings.progress)
            .with_user_agent("mario", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| self.download_error("(client)", e))?;
        // which commit the revision names now, and its files
        let info = match api.repo(self.repo_at(self.revision)).info() {
            Ok(info) => info,
            Err(e) => {
                let e = self.download_error("the repository's file list", e);
                return match (&e, cached) {
                    // no answer at all (not a refusal): what the cache has will do
                    (HubError::Download { .. }, Some(c)) => {
                        tracing::warn!(
                            "{e}; using the cached commit {c} of {}@{}",
                            self.id,
                            self.revision
                        );
                        Ok(self.done(&c))
                    }
                    _ => Err(e),
                };
            }
        };
        let files: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let commit = info.sha.clone();
        if complete(&self.snapshot(&commit)) {
            self.write_ref(&commit)?;
            return Ok(self.done(&commit));
        }
        let wanted = self.files_to_fetch(&files)?;
        // downloads name the commit, so that every file comes from the same one
        let repo = api.repo(self.repo_at(&commit));
        for file in &wanted {
            self.fetch(&repo, file)?;
        }
        if files.contains(&WEIGHTS_INDEX_FILE) && !files.contains(&WEIGHTS_FILE) {
            let index = self.snapshot(&commit).join(WEIGHTS_INDEX_FILE);
            for shard in self.shards(&index)? {
                if !files.contains(&shard.as_str()) {
                    return Err(self.unusable(format!(
                        "{WEIGHTS_INDEX_FILE} lists the shard {shard}, which the repository \
                         does not have"
                    )));
                }
                self.fetch(&repo, &shard)?;
            }
        }
        self.write_ref(&commit)?;
        Ok(self.done(&commit))
    }

    /// The files of a model folder that the repository has, weights last (a snapshot with its
    /// weights is complete), or why the repository cannot be served.
    fn files_to_fetch(&self, files: &[&str]) -> Result<Vec<&'static str>, HubError> {
        let has = |f: &str| files.contains(&f);
        if !has(CONFIG_FILE) {
            return Err(self.unusable(format!("it has no {CONFIG_FILE}: not a model repository")));
        }
        if !has(WEIGHTS_FILE) && !has(WEIGHTS_INDEX_FILE) {
            let other: Vec<&str> = files
                .iter()
                .copied()
                .filter(|f| {
                    [
                        ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".gguf", ".onnx",
                    ]
                    .iter()
                    .any(|ext| f.ends_with(ext))
                })
                .collect();
            return Err(self.unusable(format!(
                "it has no safetensors weights ({WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}){}; \
                 only safetensors are loaded (convert the weights, e.g. with transformers' \
                 save_pretrained(safe_serialization=True))",
                if other.is_empty() {
                    String::new()
                } else {
                    format!(", only {}", other.join(", "))
                }
            )));
        }
        if !has(TOKENIZER_FILE) {
            return Err(self.unusable(format!(
                "it has no {TOKENIZER_FILE} (the fast tokenizer; a repository with only \
                 spiece.model needs one: transformers' AutoTokenizer(...).save_pretrained writes \
                 it)"
            )));
        }
        let mut wanted: Vec<&'static str> = [GENERATION_CONFIG_FILE, CONTROL_FILE, EXAMPLES_FILE]
            .into_iter()
            .filter(|f| has(f))
            .collect();
        wanted.extend([CONFIG_FILE, TOKENIZER_FILE]);
        wanted.push(if has(WEIGHTS_FILE) {
            WEIGHTS_FILE
        } else {
            WEIGHTS_INDEX_FILE
        });
        Ok(wanted)
    }

    fn fetch(&self, repo: &ApiRepo, file: &str) -> Result<PathBuf, HubError> {
        tracing::info!("downloading {file} of {}@{}", self.id, self.revision);
        repo.get(file).map_err(|e| self.download_error(file, e))
    }

    /// The shard names of a safetensors index.
    fn shards(&self, index: &Path) -> Result<Vec<String>, HubError> {
        let text = std::fs::read_to_string(index).map_err(|e| HubError::Io {
            arg: self.id.to_string(),
            path: index.to_path_buf(),
            source: e,
        })?;
        shard_names(&text)
            .map_err(|problem| self.unusable(format!("{WEIGHTS_INDEX_FILE}: {problem}")))
    }

    fn write_ref(&self, commit: &str) -> Result<(), HubError> {
        self.cache()
            .repo(self.repo_at(self.revision))
            .create_ref(commit)
            .map_err(|e| HubError::Io {
                arg: self.id.to_string(),
                path: self.settings.cache_dir.clone(),
                source: e,
            })
    }

    fn unusable(&self, problem: String) -> HubError {
        HubError::Unusable {
            arg: self.id.to_string(),
            revision: self.revision.to_string(),
            problem,
        }
    }

    /// A refusal by status, or the failed download.
    fn download_error(&self, file: &str, e: ApiError) -> HubError {
        let (arg, endpoint) = (self.id.to_string(), self.settings.endpoint.clone());
        let status = match &e {
            ApiError::RequestError(inner) => match inner.as_ref() {
                ureq::Error::StatusCode(code) => Some(*code),
                _ => None,
            },
            _ => None,
        };
        match status {
            Some(404) => HubError::NotFound {
                arg,
                revision: self.revision.to_string(),
                endpoint,
            },
            Some(401) => HubError::Unauthorized {
                arg,
                endpoint,
                hint: if self.settings.token.is_some() {
                    "the token (HF_TOKEN or the saved login) was not accepted for this repository"
                } else {
                    "the repository is private, gated or does not exist; set HF_TOKEN to a \
                     token that may read it"
                },
            },
            Some(403) => HubError::Forbidden { arg, endpoint },
            _ => HubError::Download {
                arg,
                file: file.to_string(),
                endpoint,
                source: e,
            },
        }
    }
}

/// The shard file names listed by a `model.safetensors.index.json`, each a plain file name.
fn shard_names(index_json: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let index: Index =
        serde_json::from_str(index_json).map_err(|e| format!("not a safetensors index: {e}"))?;
    let shards: std::collections::BTreeSet<String> = index.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err("`weight_map` is empty".into());
    }
    if let Some(bad) = shards
        .iter()
        .find(|s| s.contains('/') || s.contains('\\') || s.contains(".."))
    {
        return Err(format!("shard name {bad:?} is not a plain file name"));
    }
    Ok(shards.into_iter().collect())
}

/// A snapshot folder with everything a model needs: config, tokenizer and all weights.
fn complete(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        && dir.join(TOKENIZER_FILE).is_file()
        && crate::model::weight_files(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_owner_slash_name_with_the_hubs_characters() {
        for ok in [
            "google/flan-t5-small",
            "some-org/some-t5",
            "a/b",
            "A_b/c.d-1",
        ] {
            assert!(looks_like_repo_id(ok), "{ok}");
        }
        for bad in [
            "t5-small",
            "models/default/x",
            "/abs/path",
            "./x",
            "owner/",
            "/name",
            "a--b/c",
            "a/b..c",
            "a/.b",
            "a/b-",
            "a b/c",
            "a/b@main",
            "C:\\x/y",
        ] {
            assert!(!looks_like_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn an_existing_folder_is_used_as_it_is_and_other_paths_are_refused_without_a_request() {
        let settings = HubSettings {
            endpoint: "http://127.0.0.1:9".into(),
            cache_dir: PathBuf::from("/nonexistent-cache"),
            token: None,
            offline: false,
            progress: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let r = resolve_model_with(dir.path(), "main", &settings).unwrap();
        assert_eq!(r.dir, dir.path());
        assert_eq!(r.source, ModelSource::Folder);
        let missing = dir.path().join("no-such-model");
        let err = resolve_model_with(&missing, "main", &settings).unwrap_err();
        assert!(matches!(err, HubError::NotAModel(_)), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn shard_names_come_from_the_index_and_must_be_plain_file_names() {
        let index = r#"{"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors",
            "b":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#;
        assert_eq!(
            shard_names(index).unwrap(),
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        assert!(shard_names(r#"{"weight_map":{"a":"../x"}}"#).is_err());
        assert!(shard_names(r#"{"weight_map":{}}"#).is_err());
    }
}
