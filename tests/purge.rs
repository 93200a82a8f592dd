//! The purge executor on real tables: pyiceberg (from PyPI) writes them on the local
//! filesystem and on an S3-compatible server (moto) on 127.0.0.1; `polaris-bridge purge`
//! deletes them. Afterwards nothing remains under the table location and everything outside
//! it is untouched. Rate limits are checked on the server side (the counting proxy's log).

mod purge_support;

use purge_support::*;

/// Every file outside `table` in `all`.
fn outside(all: &std::collections::BTreeMap<String, u64>, table_dir: &str) -> Vec<(String, u64)> {
    all.iter()
        .filter(|(k, _)| !k.starts_with(&format!("{table_dir}/")))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn purges_pyiceberg_tables_on_the_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let tables = make_tables(&format!("file://{}", wh.display()), "t,t_2,u", false, &[]);
    let t = tables.iter().find(|t| t.name == "t").unwrap();
    let u = tables.iter().find(|t| t.name == "u").unwrap();
    let t_dir = wh.join("db/t").display().to_string();
    let before = list(&format!("file://{}", wh.display()));
    let in_t = before
        .keys()
        .filter(|k| k.starts_with(&format!("{t_dir}/")))
        .count();
    assert!(in_t > 30, "table t has {in_t} files");
    // Delete files (a delete manifest), statistics and partition statistics are there.
    assert!(before.keys().any(|k| k.contains("pos-deletes")));
    assert!(before.keys().any(|k| k.ends_with(".puffin")));
    assert!(before.keys().any(|k| k.contains("partition-stats")));

    // Dry run: lists every file of t, deletes nothing.
    let (ok, stdout, stderr) = cli_purge(
        &["--metadata-location", &t.metadata_location, "--dry-run"],
        &[],
    );
    assert!(ok, "{stderr}");
    let listed: std::collections::BTreeSet<String> = stdout
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| {
            l.rsplit('\t')
                .next()
                .unwrap()
                .trim_start_matches("file://")
                .to_string()
        })
        .collect();
    assert_eq!(
        list(&format!("file://{}", wh.display())),
        before,
        "dry run deleted something"
    );
    let in_t_set: std::collections::BTreeSet<String> = before
        .keys()
        .filter(|k| k.starts_with(&format!("{t_dir}/")))
        .cloned()
        .collect();
    assert_eq!(
        listed, in_t_set,
        "the dry run lists exactly the table's files"
    );
    let last = stdout.lines().rfind(|l| l.contains('\t')).unwrap();
    assert!(last.starts_with("current-metadata\t"), "{last}");

    // The purge.
    let (ok, stdout, stderr) = cli_purge(&["--metadata-location", &t.metadata_location], &[]);
    assert!(ok, "{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["outcome"], "purged", "{stdout}");
    assert!(
        s["stats"]["files_deleted"].as_u64().unwrap() >= in_t as u64,
        "{s}"
    );
    assert_eq!(s["stats"]["failures"], 0);
    let after = list(&format!("file://{}", wh.display()));
    assert!(
        !after.keys().any(|k| k.starts_with(&format!("{t_dir}/"))),
        "left in t: {:?}",
        after
            .keys()
            .filter(|k| k.starts_with(&t_dir))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        outside(&after, &t_dir),
        outside(&before, &t_dir),
        "files outside t changed"
    );
    assert!(
        after.keys().any(|k| k.contains("/db/t_2/")),
        "the sibling table survives"
    );

    // A v1 table; then purging again finds the metadata gone.
    let (ok, _, stderr) = cli_purge(&["--metadata-location", &u.metadata_location], &[]);
    assert!(ok, "{stderr}");
    assert!(list(&u.location).is_empty());
    let (ok, stdout, _) = cli_purge(&["--metadata-location", &u.metadata_location], &[]);
    assert!(!ok);
    assert_eq!(summary(&stdout)["outcome"], "metadata_not_found");
}

#[test]
fn purges_pyiceberg_tables_on_an_s3_compatible_server() {
    let bucket = bucket("purge-s3");
    let wh = format!("s3://{bucket}/wh");
    let tables = make_tables(&wh, "t,t_2", true, &[]);
    let t = tables.iter().find(|t| t.name == "t").unwrap();
    let before = list(&wh);
    let t_prefix = format!("{wh}/db/t");
    let in_t = list(&t_prefix).len();
    assert!(in_t > 30, "{in_t}");
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &format!("batch_size = 7\n{}", s3_toml()));
    let (ok, stdout, stderr) = cli_purge(
        &[
            "--metadata-location",
            &t.metadata_location,
            "--config",
            config.to_str().unwrap(),
        ],
        S3_ENV,
    );
    assert!(ok, "{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["outcome"], "purged", "{stdout}");
    assert!(list(&t_prefix).is_empty(), "left: {:?}", list(&t_prefix));
    let after = list(&wh);
    assert_eq!(outside(&after, &t_prefix), outside(&before, &t_prefix));
    assert!(!list(&format!("{wh}/db/t_2")).is_empty());
    // Bulk deletes: at most 7 keys per DeleteObjects request.
    let deletes = delete_requests(&bucket);
    assert!(!deletes.is_empty());
    assert!(
        deletes.iter().all(|r| r.keys <= 7 && r.status == 200),
        "{deletes:?}"
    );
    assert_eq!(
        s["stats"]["files_deleted"].as_u64().unwrap(),
        deletes.iter().map(|r| r.keys).sum::<u64>()
    );
}

#[test]
fn rate_limits_hold_on_the_server_side() {
    let bucket = bucket("purge-rate");
    let wh = format!("s3://{bucket}/wh");
    let tables = make_tables(
        &wh,
        "",
        true,
        &["--files", "240", "--snapshots", "2", "--name", "big"],
    );
    let big = &tables[0];
    let dir = tempfile::tempdir().unwrap();
    // Batches of 10 files, at most 4 batches/s and 30 files/s: files dominate (3 batches/s).
    let config = cli_config(
        dir.path(),
        &format!(
            "batch_size = 10\nbatch_concurrency = 4\nmax_batches_per_second = 4\nmax_files_per_second = 30\n{}",
            s3_toml()
        ),
    );
    let (ok, stdout, stderr) = cli_purge(
        &[
            "--metadata-location",
            &big.metadata_location,
            "--config",
            config.to_str().unwrap(),
        ],
        S3_ENV,
    );
    assert!(ok, "{stderr}");
    assert_eq!(summary(&stdout)["outcome"], "purged");
    assert!(list(&big.location).is_empty());
    let deletes = delete_requests(&bucket);
    let files: u64 = deletes.iter().map(|r| r.keys).sum();
    assert!(files >= 240, "{files}");
    let span = deletes.last().unwrap().t - deletes[0].t;
    let max_files = max_in_window(&deletes, 1.0, |r| r.keys);
    let max_batches = max_in_window(&deletes, 1.0, |_| 1);
    println!(
        "{} delete requests, {files} files over {span:.2} s; at most {max_files} files and {max_batches} requests in any 1 s",
        deletes.len()
    );
    // Any 1 s window: the rate plus at most one batch (no burst beyond one batch).
    assert!(max_files <= 30 + 10, "{max_files} files in one second");
    assert!(max_batches <= 4 + 1, "{max_batches} requests in one second");
    // And on average no faster than the limit.
    assert!(
        (files - 10) as f64 / span <= 30.0 * 1.05,
        "{files} files in {span:.2} s"
    );
}

#[test]
fn refuses_paths_outside_the_table_and_bad_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let tables = make_tables(&format!("file://{}", wh.display()), "t,t_2", false, &[]);
    let t = tables.iter().find(|t| t.name == "t").unwrap();
    let t2 = tables.iter().find(|t| t.name == "t_2").unwrap();
    let before = list(&format!("file://{}", wh.display()));

    // A metadata file of t whose last snapshot points at the sibling's manifest list.
    let meta_path = t.metadata_location.trim_start_matches("file://");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta_path).unwrap()).unwrap();
    let t2_meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t2.metadata_location.trim_start_matches("file://")).unwrap(),
    )
    .unwrap();
    let sibling_list = t2_meta["snapshots"][0]["manifest-list"].clone();
    let snapshots = meta["snapshots"].as_array_mut().unwrap();
    snapshots.last_mut().unwrap()["manifest-list"] = sibling_list;
    let evil = format!("{}/db/t/metadata/99999-evil.metadata.json", wh.display());
    std::fs::write(&evil, serde_json::to_vec(&meta).unwrap()).unwrap();
    let (ok, _, stderr) = cli_purge(&["--metadata-location", &evil], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("refusing") && stderr.contains("t_2"),
        "{stderr}"
    );
    std::fs::remove_file(&evil).unwrap();
    assert_eq!(
        list(&format!("file://{}", wh.display())),
        before,
        "something was deleted"
    );

    // Without the verification pass the purge stops at the outside path: nothing outside goes.
    let config = cli_config(dir.path(), "verify_before_delete = false");
    std::fs::write(&evil, serde_json::to_vec(&meta).unwrap()).unwrap();
    let (ok, _, stderr) = cli_purge(
        &[
            "--metadata-location",
            &evil,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("refusing"), "{stderr}");
    let t2_dir = wh.join("db/t_2").display().to_string();
    let after = list(&format!("file://{}", wh.display()));
    assert_eq!(
        after
            .iter()
            .filter(|(k, _)| k.starts_with(&t2_dir))
            .collect::<Vec<_>>(),
        before
            .iter()
            .filter(|(k, _)| k.starts_with(&t2_dir))
            .collect::<Vec<_>>()
    );
}
