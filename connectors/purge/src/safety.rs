//! Where a file lives, and whether the purge may touch it.
//!
//! Every path the purge meets (metadata files, manifest lists, manifests, content files,
//! statistics) is parsed into an [`ObjectUri`] and checked against the purge's roots: the
//! table location and the configured allowed prefixes. Containment compares normalized
//! segments, as if both ended in `/`: `s3://b/db/t` contains `s3://b/db/t/data/x.parquet`
//! but never `s3://b/db/t_2/data/x.parquet`.
//!
//! Iceberg paths are literal: the text after `scheme://authority/` is the object key (or the
//! filesystem path) as written, without percent-decoding, as Iceberg's own FileIO
//! implementations read them.

use std::fmt;

/// The kind of store a URI addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// The local filesystem: `/path`, `file:/path`, `file:///path`.
    File,
    /// Amazon S3 or an S3-compatible store: `s3://`, `s3a://`, `s3n://`.
    S3,
    /// Google Cloud Storage: `gs://`.
    Gcs,
    /// Azure Blob Storage / ADLS Gen2: `abfs[s]://container@account.dfs.core.windows.net/`,
    /// `wasb[s]://container@account.blob.core.windows.net/`, `az://container/`.
    Azure,
}

impl Scheme {
    /// The canonical scheme name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::File => "file",
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// A parsed file URI: scheme, authority (bucket or container, empty for files) and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectUri {
    /// The store kind.
    pub scheme: Scheme,
    /// Bucket (S3, GCS), `container@account...` or container (Azure); empty for files.
    pub authority: String,
    /// The object key, or the filesystem path without its leading `/`, as written.
    pub key: String,
}

/// A URI the purge cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{uri}`: {problem}")]
pub struct UriError {
    /// The URI as given.
    pub uri: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ObjectUri {
    /// Parses an Iceberg file location.
    pub fn parse(uri: &str) -> Result<ObjectUri, UriError> {
        let fail = |problem: &str| UriError {
            uri: uri.to_string(),
            problem: problem.to_string(),
        };
        let (scheme, authority, key) = if let Some(path) = uri.strip_prefix('/') {
            (Scheme::File, String::new(), path.to_string())
        } else if let Some(rest) = uri.strip_prefix("file:") {
            let path = match rest.strip_prefix("//") {
                // file:///path or file://localhost/path
                Some(after) => {
                    let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
                    if !host.is_empty() && host != "localhost" {
                        return Err(fail("a file URI naming a remote host is not supported"));
                    }
                    path
                }
                // file:/path (Hadoop's form)
                None => rest,
            };
            let Some(path) = path.strip_prefix('/') else {
                return Err(fail("a file URI must hold an absolute path"));
            };
            (Scheme::File, String::new(), path.to_string())
        } else {
            let Some((scheme, rest)) = uri.split_once("://") else {
                return Err(fail(
                    "not a URI with a scheme (s3://, gs://, abfss://, file://) nor an absolute path",
                ));
            };
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "s3" | "s3a" | "s3n" => Scheme::S3,
                "gs" => Scheme::Gcs,
                "abfs" | "abfss" | "wasb" | "wasbs" | "az" | "azure" | "adl" => Scheme::Azure,
                other => return Err(fail(&format!("unsupported scheme `{other}`"))),
            };
            let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.is_empty() {
                return Err(fail("no bucket or container"));
            }
            (scheme, authority.to_string(), key.to_string())
        };
        let parsed = ObjectUri {
            scheme,
            authority,
            key,
        };
        for segment in parsed.segments() {
            if segment == "." || segment == ".." {
                return Err(fail("a `.` or `..` path segment is not allowed"));
            }
        }
        Ok(parsed)
    }

    /// The key's non-empty segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.key.split('/').filter(|s| !s.is_empty())
    }

    /// Whether `other` lies strictly inside this location (segment-wise, so `db/t` does not
    /// contain `db/t_2/x`), on the same store.
    pub fn contains(&self, other: &ObjectUri) -> bool {
        if self.scheme != other.scheme || self.authority != other.authority {
            return false;
        }
        let mut mine = self.segments();
        let mut theirs = other.segments();
        loop {
            match (mine.next(), theirs.next()) {
                (None, Some(_)) => return true,
                (None, None) => return false,
                (Some(_), None) => return false,
                (Some(a), Some(b)) if a != b => return false,
                _ => {}
            }
        }
    }

    /// Whether both name the same location (ignoring empty segments and a trailing `/`).
    pub fn same_location(&self, other: &ObjectUri) -> bool {
        self.scheme == other.scheme
            && self.authority == other.authority
            && self.segments().eq(other.segments())
    }
}

impl fmt::Display for ObjectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::File => write!(f, "file:///{}", self.key),
            scheme => write!(f, "{}://{}/{}", scheme.name(), self.authority, self.key),
        }
    }
}

/// The locations a purge may delete in: the table location and the allowed prefixes.
#[derive(Debug, Clone)]
pub struct Roots {
    table: ObjectUri,
    allowed: Vec<ObjectUri>,
}

/// A file the purge refuses to touch, or a table location it refuses to purge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetyError {
    /// A file outside every root.
    #[error(
        "refusing `{path}` ({what}): it is outside the table location `{table}` and every \
         allowed prefix; nothing outside is deleted (add its location to `allowed_prefixes` \
         if it belongs to the table)"
    )]
    Outside {
        /// The file.
        path: String,
        /// What it is and where it was listed.
        what: String,
        /// The table location.
        table: String,
    },
    /// A location that cannot be parsed.
    #[error("invalid location ({what}): {error}")]
    Invalid {
        /// What it is and where it was listed.
        what: String,
        /// Why.
        error: UriError,
    },
    /// A table location too close to a store's root to be purged safely.
    #[error(
        "refusing to purge table location `{0}`: it is the root of a bucket, container or \
         filesystem (or too close to it)"
    )]
    LocationTooShallow(String),
    /// The event and the metadata file disagree about the table location.
    #[error(
        "the event says the table is at `{event}` but its metadata file says `{metadata}`; \
         nothing is deleted"
    )]
    LocationMismatch {
        /// From the event.
        event: String,
        /// From metadata.json.
        metadata: String,
    },
}

impl Roots {
    /// The roots of a table at `table_location`, plus `allowed_prefixes`.
    pub fn new(table_location: &str, allowed_prefixes: &[String]) -> Result<Roots, SafetyError> {
        let table = ObjectUri::parse(table_location).map_err(|error| SafetyError::Invalid {
            what: "table location".into(),
            error,
        })?;
        let min_depth = match table.scheme {
            Scheme::File => 2,
            _ => 1,
        };
        if table.segments().count() < min_depth {
            return Err(SafetyError::LocationTooShallow(table_location.to_string()));
        }
        let allowed = allowed_prefixes
            .iter()
            .map(|p| {
                ObjectUri::parse(p).map_err(|error| SafetyError::Invalid {
                    what: "allowed prefix".into(),
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Roots { table, allowed })
    }

    /// The table location.
    pub fn table(&self) -> &ObjectUri {
        &self.table
    }

    /// Parses `path` and checks that it lies inside a root; `what` says what the file is, for
    /// the error message.
    pub fn check(
        &self,
        path: &str,
        what: impl FnOnce() -> String,
    ) -> Result<ObjectUri, SafetyError> {
        let uri = match ObjectUri::parse(path) {
            Ok(uri) => uri,
            Err(error) => {
                return Err(SafetyError::Invalid {
                    what: what(),
                    error,
                })
            }
        };
        if self.table.contains(&uri) || self.allowed.iter().any(|root| root.contains(&uri)) {
            Ok(uri)
        } else {
            Err(SafetyError::Outside {
                path: path.to_string(),
                what: what(),
                table: self.table.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> ObjectUri {
        ObjectUri::parse(s).unwrap()
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            uri("s3://lake/db/t/data/a.parquet"),
            ObjectUri {
                scheme: Scheme::S3,
                authority: "lake".into(),
                key: "db/t/data/a.parquet".into()
            }
        );
        assert_eq!(uri("s3a://lake/x").scheme, Scheme::S3);
        for file in [
            "/tmp/wh/t/x",
            "file:/tmp/wh/t/x",
            "file:///tmp/wh/t/x",
            "file://localhost/tmp/wh/t/x",
        ] {
            let u = uri(file);
            assert_eq!(
                (u.scheme, u.key.as_str()),
                (Scheme::File, "tmp/wh/t/x"),
                "{file}"
            );
        }
        assert_eq!(uri("gs://b/k").scheme, Scheme::Gcs);
        let az = uri("abfss://c@acct.dfs.core.windows.net/db/t");
        assert_eq!(
            (az.scheme, az.authority.as_str()),
            (Scheme::Azure, "c@acct.dfs.core.windows.net")
        );
        assert!(ObjectUri::parse("hdfs://nn/x").is_err());
        assert!(ObjectUri::parse("relative/path").is_err());
        assert!(ObjectUri::parse("s3:///nobucket").is_err());
        assert!(ObjectUri::parse("file://otherhost/x").is_err());
        assert!(ObjectUri::parse("s3://b/db/t/../t_2/x").is_err());
        assert!(ObjectUri::parse("/tmp/./x").is_err());
        // Literal: no percent-decoding.
        assert_eq!(uri("s3://b/p=a%20b/x").key, "p=a%20b/x");
    }

    #[test]
    fn containment_is_segment_wise() {
        let t = uri("s3://lake/db/t");
        assert!(t.contains(&uri("s3://lake/db/t/data/x.parquet")));
        assert!(uri("s3://lake/db/t/").contains(&uri("s3://lake/db/t/x")));
        assert!(t.contains(&uri("s3://lake/db//t/x")));
        assert!(!t.contains(&uri("s3://lake/db/t_2/data/x.parquet")));
        assert!(!t.contains(&uri("s3://lake/db/t")));
        assert!(!t.contains(&uri("s3://lake/db/tx")));
        assert!(!t.contains(&uri("s3://other/db/t/x")));
        assert!(!t.contains(&uri("gs://lake/db/t/x")));
        assert!(uri("file:/tmp/w/t").contains(&uri("/tmp/w/t/m/v1.metadata.json")));
    }

    #[test]
    fn roots_check_table_and_allowed_prefixes() {
        let roots = Roots::new("s3://lake/db/t", &["s3://shared/t-data/".to_string()]).unwrap();
        assert!(roots
            .check("s3://lake/db/t/data/a", || "data file".into())
            .is_ok());
        assert!(roots
            .check("s3a://shared/t-data/a", || "data file".into())
            .is_ok());
        let err = roots
            .check("s3://lake/db/t_2/data/a", || {
                "data file listed in m.avro".into()
            })
            .unwrap_err();
        assert!(matches!(err, SafetyError::Outside { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("t_2") && text.contains("m.avro"), "{text}");
        assert!(matches!(
            roots.check("relative", || "x".into()),
            Err(SafetyError::Invalid { .. })
        ));
        assert!(matches!(
            Roots::new("s3://lake", &[]),
            Err(SafetyError::LocationTooShallow(_))
        ));
        assert!(matches!(
            Roots::new("s3://lake/", &[]),
            Err(SafetyError::LocationTooShallow(_))
        ));
        assert!(matches!(
            Roots::new("/tmp", &[]),
            Err(SafetyError::LocationTooShallow(_))
        ));
        assert!(Roots::new("/tmp/t", &[]).is_ok());
    }
}
