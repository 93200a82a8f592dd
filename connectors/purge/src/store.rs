//! `object_store` construction: one store per (scheme, bucket or container), built from the
//! connector's settings and the standard environment, cached for the connector's lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::ObjectStore;

use crate::config::PurgeConfig;
use crate::safety::{ObjectUri, Scheme};

/// A store and how it deletes.
#[derive(Clone)]
pub struct Store {
    /// The `object_store` client.
    pub inner: Arc<dyn ObjectStore>,
    /// Most objects per delete request: 1000 (S3 `DeleteObjects`), 256 (Azure blob batch), or
    /// 1 for stores that delete one object per request (local files, GCS).
    pub per_request: usize,
    /// Which kind of store.
    pub scheme: Scheme,
}

impl Store {
    /// Requests needed to delete `files` objects.
    pub fn requests_for(&self, files: usize) -> u64 {
        files.div_ceil(self.per_request) as u64
    }
}

/// A store that cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// This build lacks the store's cargo feature.
    #[error(
        "`{scheme}://` locations need polaris-bridge built with the `{feature}` feature \
         (cargo build --features {feature})"
    )]
    NotCompiled {
        /// The scheme.
        scheme: &'static str,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The builder refused the settings.
    #[error("cannot set up the object store for `{location}`: {message}")]
    Build {
        /// `scheme://authority`.
        location: String,
        /// object_store's message.
        message: String,
    },
    /// The key cannot be addressed through object_store (an empty segment, a control
    /// character).
    #[error("cannot address `{uri}` in the object store: {message}")]
    Key {
        /// The file.
        uri: String,
        /// Why.
        message: String,
    },
}

/// Builds and caches stores.
pub struct Stores {
    config: Arc<PurgeConfig>,
    cache: Mutex<HashMap<(Scheme, String), Store>>,
}

impl Stores {
    /// A cache building stores with `config`'s settings.
    pub fn new(config: Arc<PurgeConfig>) -> Self {
        Stores {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store holding `uri`, and the object's path in it.
    pub fn resolve(&self, uri: &ObjectUri) -> Result<(Store, Path), StoreError> {
        let path = Path::parse(&uri.key).map_err(|e| StoreError::Key {
            uri: uri.to_string(),
            message: e.to_string(),
        })?;
        let key = (uri.scheme, uri.authority.clone());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = cache.get(&key) {
            return Ok((store.clone(), path));
        }
        let store = build(&self.config, uri)?;
        cache.insert(key, store.clone());
        Ok((store, path))
    }
}

fn build(config: &PurgeConfig, uri: &ObjectUri) -> Result<Store, StoreError> {
    match uri.scheme {
        Scheme::File => Ok(Store {
            inner: Arc::new(object_store::local::LocalFileSystem::new()),
            per_request: 1,
            scheme: Scheme::File,
        }),
        Scheme::S3 => s3(config, uri),
        Scheme::Gcs => gcs(config, uri),
        Scheme::Azure => azure(config, uri),
    }
}

#[cfg(feature = "aws")]
fn s3(config: &PurgeConfig, uri: &ObjectUri) -> Result<Store, StoreError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use std::str::FromStr;

    let fail = |message: String| StoreError::Build {
        location: format!("s3://{}", uri.authority),
        message,
    };
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&uri.authority);
    let s3 = &config.s3;
    let env_has_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    let profile = if env_has_keys {
        None
    } else {
        aws_profile::load(s3.profile.as_deref())
    };
    if let Some(p) = &profile {
        if let (Some(id), Some(secret)) = (&p.access_key_id, &p.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &p.session_token {
                builder = builder.with_token(token);
            }
        }
    }
    let env_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok();
    if let Some(region) = s3
        .region
        .clone()
        .or(env_region)
        .or_else(|| profile.as_ref().and_then(|p| p.region.clone()))
    {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(!s3.path_style.unwrap_or(true))
            .with_allow_http(s3.allow_http.unwrap_or(endpoint.starts_with("http://")));
    } else {
        if let Some(path_style) = s3.path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        if let Some(allow) = s3.allow_http {
            builder = builder.with_allow_http(allow);
        }
    }
    for (key, value) in &config.store_options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(key) {
            builder = builder.with_config(key, value);
        }
    }
    let bulk = config
        .store_options
        .get("aws_disable_bulk_delete")
        .is_none_or(|v| v != "true");
    let store = builder.build().map_err(|e| fail(e.to_string()))?;
    Ok(Store {
        inner: Arc::new(store),
        per_request: if bulk { 1000 } else { 1 },
        scheme: Scheme::S3,
    })
}

#[cfg(not(feature = "aws"))]
fn s3(_: &PurgeConfig, _: &ObjectUri) -> Result<Store, StoreError> {
    Err(StoreError::NotCompiled {
        scheme: "s3",
        feature: "aws",
    })
}

#[cfg(feature = "gcp")]
fn gcs(config: &PurgeConfig, uri: &ObjectUri) -> Result<Store, StoreError> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    use std::str::FromStr;

    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&uri.authority);
    for (key, value) in &config.store_options {
        if let Ok(key) = GoogleConfigKey::from_str(key) {
            builder = builder.with_config(key, value);
        }
    }
    let store = builder.build().map_err(|e| StoreError::Build {
        location: format!("gs://{}", uri.authority),
        message: e.to_string(),
    })?;
    Ok(Store {
        inner: Arc::new(store),
        per_request: 1,
        scheme: Scheme::Gcs,
    })
}

#[cfg(not(feature = "gcp"))]
fn gcs(_: &PurgeConfig, _: &ObjectUri) -> Result<Store, StoreError> {
    Err(StoreError::NotCompiled {
        scheme: "gs",
        feature: "gcp",
    })
}

#[cfg(feature = "azure")]
fn azure(config: &PurgeConfig, uri: &ObjectUri) -> Result<Store, StoreError> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    use std::str::FromStr;

    // `container@account.dfs.core.windows.net` (abfss/wasbs) or a bare container (az://).
    let url = if uri.authority.contains('@') {
        format!("abfss://{}", uri.authority)
    } else {
        format!("az://{}", uri.authority)
    };
    let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
    for (key, value) in &config.store_options {
        if let Ok(key) = AzureConfigKey::from_str(key) {
            builder = builder.with_config(key, value);
        }
    }
    let store = builder.build().map_err(|e| StoreError::Build {
        location: format!("az://{}", uri.authority),
        message: e.to_string(),
    })?;
    Ok(Store {
        inner: Arc::new(store),
        per_request: 256,
        scheme: Scheme::Azure,
    })
}

#[cfg(not(feature = "azure"))]
fn azure(_: &PurgeConfig, _: &ObjectUri) -> Result<Store, StoreError> {
    Err(StoreError::NotCompiled {
        scheme: "abfss",
        feature: "azure",
    })
}

/// Static credentials of a shared AWS profile (`~/.aws/credentials`, `~/.aws/config`).
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub mod aws_profile {
    use std::path::PathBuf;

    /// What a profile sets.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Profile {
        /// `aws_access_key_id`.
        pub access_key_id: Option<String>,
        /// `aws_secret_access_key`.
        pub secret_access_key: Option<String>,
        /// `aws_session_token`.
        pub session_token: Option<String>,
        /// `region` (from the config file).
        pub region: Option<String>,
    }

    /// Reads profile `name` (else `AWS_PROFILE`, else `default`) from the shared files
    /// (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `~/.aws/...`). `None` when
    /// neither file has the profile.
    pub fn load(name: Option<&str>) -> Option<Profile> {
        let name = name
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .unwrap_or_else(|| "default".to_string());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|p| std::fs::read_to_string(p).ok());
        let config =
            file("AWS_CONFIG_FILE", "config").and_then(|p| std::fs::read_to_string(p).ok());
        parse(&name, credentials.as_deref(), config.as_deref())
    }

    /// Extracts profile `name` from the texts of the credentials and config files.
    pub fn parse(name: &str, credentials: Option<&str>, config: Option<&str>) -> Option<Profile> {
        let mut profile = Profile::default();
        let mut found = false;
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        for (text, section) in [(credentials, name.to_string()), (config, config_section)] {
            let Some(text) = text else { continue };
            let mut inside = false;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                    continue;
                }
                if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    inside = header.trim() == section;
                    found |= inside;
                    continue;
                }
                if !inside {
                    continue;
                }
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let value = Some(value.trim().to_string());
                match key.trim() {
                    "aws_access_key_id" => profile.access_key_id = value,
                    "aws_secret_access_key" => profile.secret_access_key = value,
                    "aws_session_token" => profile.session_token = value,
                    "region" => profile.region = value,
                    _ => {}
                }
            }
        }
        found.then_some(profile)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_static_keys_and_region() {
            let credentials = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n[dev]\naws_access_key_id=D\naws_secret_access_key=DS\naws_session_token=T\n";
            let config = "[default]\nregion = eu-west-1\n[profile dev]\nregion=us-west-2\n";
            let p = parse("dev", Some(credentials), Some(config)).unwrap();
            assert_eq!(p.access_key_id.as_deref(), Some("D"));
            assert_eq!(p.session_token.as_deref(), Some("T"));
            assert_eq!(p.region.as_deref(), Some("us-west-2"));
            let d = parse("default", Some(credentials), Some(config)).unwrap();
            assert_eq!(
                (d.access_key_id.as_deref(), d.region.as_deref()),
                (Some("A"), Some("eu-west-1"))
            );
            assert!(parse("nope", Some(credentials), Some(config)).is_none());
        }
    }
}
