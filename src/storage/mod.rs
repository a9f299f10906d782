//! Where inputs and outputs live: a local path, or an object in a bucket
//! named by an `s3://`, `gs://` or `az://` URL (`file://` is a local path).
//! A store is reached with the credentials and endpoint the ecosystem's
//! environment variables give (`AWS_*`, `GOOGLE_*`, `AZURE_*`, read by
//! `object_store`), overridden by the `[storage]` table of `--config`, then
//! by `--storage-option key=value`. No message shows an option's value or a
//! URL's password or query.

pub mod read;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use object_store::client::SpawnedReqwestConnector;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

/// An object store that cannot be reached, or refused an operation.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {url}")]
pub struct StorageError {
    /// What pos-etl was doing (`cannot read`, `cannot list`…).
    pub operation: &'static str,
    /// The object or prefix, without credentials.
    pub url: String,
    /// The store's error.
    #[source]
    pub source: object_store::Error,
}

/// Settings of the object stores, from `[storage]` and `--storage-option`
/// (later ones win). `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(Vec<(String, String)>);

/// A setting that no kind of store knows: most likely misspelt, and then the
/// run would quietly use other credentials.
#[derive(Debug, thiserror::Error)]
#[error("unknown object-store setting {key} (the keys are object_store's: aws_region, aws_secret_access_key, google_service_account, azure_storage_account_key…)")]
pub struct UnknownSetting {
    /// The key, as given.
    pub key: String,
}

impl StorageOptions {
    /// The settings, in the order they apply; each key must be one that
    /// S3, GCS or Azure knows.
    pub fn new(options: Vec<(String, String)>) -> Result<Self, UnknownSetting> {
        use object_store::{aws::AmazonS3ConfigKey, azure::AzureConfigKey, gcp::GoogleConfigKey};
        for (key, _) in &options {
            let key_text = key.to_ascii_lowercase();
            let known = key_text.parse::<AmazonS3ConfigKey>().is_ok()
                || key_text.parse::<GoogleConfigKey>().is_ok()
                || key_text.parse::<AzureConfigKey>().is_ok();
            if !known {
                return Err(UnknownSetting { key: key.clone() });
            }
        }
        Ok(StorageOptions(options))
    }

    /// The settings by key (lower case), the last of each key winning.
    pub fn to_map(&self) -> std::collections::HashMap<String, String> {
        self.0.iter().map(|(key, value)| (key.to_ascii_lowercase(), value.clone())).collect()
    }

    /// `text` with the value of every setting that may be a secret (a
    /// key, secret, token, password or signature, a URL with a password)
    /// replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        const SECRET: [&str; 6] = ["key", "secret", "token", "password", "sas", "proxy"];
        self.0
            .iter()
            .filter(|(key, value)| value.len() >= 4 && SECRET.iter().any(|word| key.to_ascii_lowercase().contains(word)))
            .fold(text.to_string(), |text, (_, value)| text.replace(value.as_str(), "***"))
    }
}

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(key, _)| format!("{key}=***"))).finish()
    }
}

/// A URL that names no object store pos-etl can use.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {detail}")]
pub struct BadUrl {
    /// The URL, without credentials.
    pub url: String,
    /// What is wrong.
    pub detail: String,
}

/// A file or directory: a local path, or an object or prefix in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local path.
    Local(PathBuf),
    /// An object (or a prefix, for a directory) in a store.
    Object(ObjectUrl),
}

impl Location {
    /// `text` as a location: a URL (`s3://`, `gs://`, `az://`, `file://`…),
    /// or a local path (which may hold a colon: `backup:1.csv`).
    pub fn parse(text: &str, options: &StorageOptions) -> Result<Location, BadUrl> {
        match Url::parse(text) {
            Ok(url) if text.contains("://") => Location::from_url(url, options),
            _ => Ok(Location::Local(PathBuf::from(text))),
        }
    }

    fn from_url(url: Url, options: &StorageOptions) -> Result<Location, BadUrl> {
        // A builder's message may quote the URL, or a setting, whole.
        let bad = |detail: String| BadUrl { url: shown(&url), detail: options.scrub(&scrub_url(&detail, &url)) };
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                let path = url.to_file_path().map_err(|()| bad("not a local path".to_string()))?;
                return Ok(Location::Local(path));
            }
            ObjectStoreScheme::AmazonS3 => {
                let builder = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str()).with_http_connector(io_connector());
                Arc::new(configure(builder, options, |b, k, v| b.with_config(k, v)).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let builder = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).with_http_connector(io_connector());
                Arc::new(configure(builder, options, |b, k, v| b.with_config(k, v)).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let builder = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str()).with_http_connector(io_connector());
                Arc::new(configure(builder, options, |b, k, v| b.with_config(k, v)).build().map_err(|e| bad(e.to_string()))?)
            }
            other => return Err(bad(format!("{other:?} URLs are not supported: use s3://, gs://, az:// or a local path"))),
        };
        let path = ObjectPath::parse(path).map_err(|e| bad(e.to_string()))?;
        Ok(Location::Object(ObjectUrl { store, path, shown: shown(&url) }))
    }

    /// The entry `name` of this directory or prefix.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(dir) => Location::Local(dir.join(name)),
            Location::Object(prefix) => Location::Object(prefix.join(name)),
        }
    }

    /// This location with `suffix` appended to its name (`out.csv` → `out.csv.rejects.csv`).
    pub fn with_suffix(&self, suffix: &str) -> Location {
        match self {
            Location::Local(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                Location::Local(PathBuf::from(name))
            }
            Location::Object(object) => Location::Object(object.with_suffix(suffix)),
        }
    }

    /// The extension of the name, lower case.
    pub fn extension(&self) -> Option<String> {
        let name = match self {
            Location::Local(path) => path.file_name()?.to_string_lossy().into_owned(),
            Location::Object(object) => object.path.filename()?.to_string(),
        };
        Path::new(&name).extension().map(|ext| ext.to_string_lossy().to_ascii_lowercase())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Object(object) => f.write_str(&object.shown),
        }
    }
}

/// Sets each of `options` on an object-store builder; keys the builder does
/// not know are left to the other kinds of store.
fn configure<B, K: std::str::FromStr>(builder: B, options: &StorageOptions, set: impl Fn(B, K, &str) -> B) -> B {
    options.0.iter().fold(builder, |builder, (key, value)| match key.to_ascii_lowercase().parse() {
        Ok(key) => set(builder, key, value),
        Err(_) => builder,
    })
}

/// Requests to a store run on a runtime of their own. The run's runtime
/// threads are kept busy by the rules, and a response that arrives while
/// none of them polls the network waits for one: reading 10 million rows
/// from a bucket took 3.5 times as long as from files.
fn io_connector() -> SpawnedReqwestConnector {
    SpawnedReqwestConnector::new(io_runtime())
}

/// The runtime object-store requests run on.
pub fn io_runtime() -> tokio::runtime::Handle {
    static IO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pos-etl-io")
            .enable_all()
            .build()
            .expect("a runtime for object-store requests")
    });
    IO.handle().clone()
}

/// `url` as messages show it: without its password and query (a SAS token).
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// `text` with `url`, its password and its query replaced by what messages show.
fn scrub_url(text: &str, url: &Url) -> String {
    let mut text = text.replace(url.as_str(), &shown(url));
    for secret in [url.password(), url.query()].into_iter().flatten().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret, "***");
    }
    text
}

/// An object, or a prefix of objects, in a store.
#[derive(Clone)]
pub struct ObjectUrl {
    /// The store (the bucket, with its credentials).
    pub store: Arc<dyn ObjectStore>,
    /// The object's key.
    pub path: ObjectPath,
    /// The URL as messages show it.
    shown: String,
}

impl ObjectUrl {
    /// The object `name` under this prefix.
    pub fn join(&self, name: &str) -> ObjectUrl {
        ObjectUrl {
            store: self.store.clone(),
            path: self.path.clone().join(name),
            shown: format!("{}/{name}", self.shown.trim_end_matches('/')),
        }
    }

    /// This object with `suffix` appended to its key.
    pub fn with_suffix(&self, suffix: &str) -> ObjectUrl {
        ObjectUrl {
            store: self.store.clone(),
            path: ObjectPath::from(format!("{}{suffix}", self.path)),
            shown: format!("{}{suffix}", self.shown),
        }
    }

    /// An error of `operation` on this object.
    pub fn error(&self, operation: &'static str, source: object_store::Error) -> StorageError {
        StorageError { operation, url: self.shown.clone(), source }
    }

    /// The objects directly under this prefix: their names and sizes.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, StorageError> {
        let listed = self.store.list_with_delimiter(Some(&self.path)).await.map_err(|e| self.error("cannot list", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|meta| Some((meta.location.filename()?.to_string(), meta.size)))
            .collect())
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for ObjectUrl {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown
    }
}

impl Eq for ObjectUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_stores_and_paths_stay_local() {
        let options = StorageOptions::new(vec![
            ("aws_access_key_id".into(), "AKIA-TEST".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "very-secret".into()),
            ("aws_region".into(), "eu-west-1".into()),
            ("google_service_account".into(), "/etc/gcs.json".into()),
        ])
        .unwrap();
        let misspelt = StorageOptions::new(vec![("aws_secret_acess_key".into(), "x".into())]).unwrap_err();
        assert_eq!(misspelt.key, "aws_secret_acess_key");
        assert_eq!(Location::parse("out/a.csv", &options).unwrap(), Location::Local(PathBuf::from("out/a.csv")));
        assert_eq!(Location::parse("backup:1.csv", &options).unwrap(), Location::Local(PathBuf::from("backup:1.csv")));
        assert_eq!(Location::parse("file:///tmp/a.csv", &options).unwrap(), Location::Local(PathBuf::from("/tmp/a.csv")));
        let Location::Object(object) = Location::parse("s3://bucket/exports/day1/", &options).unwrap() else {
            panic!("an s3 URL is an object");
        };
        assert_eq!(object.path.as_ref(), "exports/day1");
        let joined = Location::Object(object).join("store.csv");
        assert_eq!(joined.to_string(), "s3://bucket/exports/day1/store.csv");
        assert_eq!(joined.with_suffix(".lock").extension().as_deref(), Some("lock"));
        let shown = Location::parse("az://user:hunter2@container/x.csv?sig=abc", &options).map(|l| l.to_string());
        let shown = match shown {
            Ok(text) => text,
            Err(error) => error.to_string(),
        };
        assert!(!shown.contains("hunter2") && !shown.contains("sig=abc"), "{shown}");
        assert!(!format!("{options:?}").contains("very-secret"));
        assert_eq!(options.scrub("refused very-secret for AKIA-TEST in eu-west-1"), "refused *** for *** in eu-west-1");
        let error = Location::parse("http://host/x.csv", &options).unwrap_err().to_string();
        assert!(error.contains("not supported"), "{error}");
    }
}
