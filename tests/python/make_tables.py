"""Makes Iceberg tables with pyiceberg for the purge tests and benchmark.

    make_tables.py --warehouse file:///tmp/wh [--s3-endpoint http://127.0.0.1:PORT] \
        [--tables t,t_2,u] [--files N --snapshots S]

Catalog: a SqlCatalog on sqlite in the warehouse directory (or a temp dir for S3). Tables in
namespace `db`:

- `t`    v2, partitioned by `category`: three appends, an overwrite, a copy-on-write delete,
         a statistics file (puffin) and a partition statistics file registered in the
         metadata, and a position delete file in a delete manifest (pyiceberg cannot write
         merge-on-read deletes itself, so that snapshot is committed through its lower-level
         manifest writers).
- `t_2`  the sibling of `t` (same prefix): v2, unpartitioned, two appends. Must survive.
- `u`    v1, unpartitioned: two appends and an overwrite.
- `big`  (with --files N) N tiny data files added with add_files in S snapshots; for the
         benchmark.

Prints one JSON object per table on stdout: name, location, metadata_location, table_uuid.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo
from pyiceberg.io import load_file_io
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestWriterV2,
    write_manifest_list,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.statistics import BlobMetadata, PartitionStatisticsFile, StatisticsFile
from pyiceberg.table.update import (
    AddSnapshotUpdate,
    AssertRefSnapshotId,
    SetPartitionStatisticsUpdate,
    SetSnapshotRefUpdate,
)
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, NestedField, StringType

warnings.filterwarnings("ignore")

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "category", StringType(), required=False),
    NestedField(3, "payload", StringType(), required=False),
)


def rows(start, n, categories=("a", "b", "c")):
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "category": pa.array([categories[i % len(categories)] for i in range(n)], pa.string()),
            "payload": pa.array([f"row-{start + i}" for i in range(n)], pa.string()),
        }
    )


def catalog_for(args):
    props = {"warehouse": args.warehouse}
    if args.s3_endpoint:
        props.update(
            {
                "s3.endpoint": args.s3_endpoint,
                "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
                "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
                "s3.force-virtual-addressing": "false",
            }
        )
        db_dir = args.catalog_dir or tempfile.mkdtemp(prefix="pb-catalog-")
        import boto3

        bucket = args.warehouse.split("://", 1)[1].split("/", 1)[0]
        s3 = boto3.client(
            "s3",
            endpoint_url=args.s3_endpoint,
            aws_access_key_id=props["s3.access-key-id"],
            aws_secret_access_key=props["s3.secret-access-key"],
            region_name=props["s3.region"],
        )
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    else:
        db_dir = args.catalog_dir or args.warehouse.removeprefix("file://")
    os.makedirs(db_dir, exist_ok=True)
    props["uri"] = f"sqlite:///{db_dir}/catalog-{os.getpid()}-{time.time_ns()}.db"
    catalog = SqlCatalog("bench", **props)
    catalog.create_namespace_if_not_exists("db")
    return catalog


def write_stats_files(table, io):
    """A puffin-shaped statistics file and a partition statistics file for the current snapshot."""
    snap = table.current_snapshot()
    base = table.location().rstrip("/")
    puffin = f"{base}/metadata/{snap.snapshot_id}-stats.puffin"
    body = b"PFA1" + b"\x00" * 32 + b"PFA1"
    with io.new_output(puffin).create(overwrite=True) as f:
        f.write(body)
    with table.update_statistics() as update:
        update.set_statistics(
            StatisticsFile(
                snapshot_id=snap.snapshot_id,
                statistics_path=puffin,
                file_size_in_bytes=len(body),
                file_footer_size_in_bytes=8,
                blob_metadata=[
                    BlobMetadata(type="apache-datasketches-theta-v1", snapshot_id=snap.snapshot_id,
                                 sequence_number=snap.sequence_number, fields=[1], properties={})
                ],
            )
        )
    part_stats = f"{base}/metadata/partition-stats-{snap.snapshot_id}.parquet"
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"partition": ["a"], "record_count": [1]}), buf)
    data = buf.getvalue().to_pybytes()
    with io.new_output(part_stats).create(overwrite=True) as f:
        f.write(data)
    with table.transaction() as tx:
        tx._apply(
            (
                SetPartitionStatisticsUpdate(
                    partition_statistics=PartitionStatisticsFile(
                        snapshot_id=snap.snapshot_id, statistics_path=part_stats, file_size_in_bytes=len(data)
                    )
                ),
            ),
            (),
        )


class DeleteManifestWriter(ManifestWriterV2):
    def content(self):
        return ManifestContent.DELETES

    @property
    def _meta(self):
        return {**super()._meta, "content": "deletes"}


def add_position_deletes(table, io):
    """Commits a snapshot that adds one position delete file in a delete manifest."""
    meta = table.metadata
    parent = table.current_snapshot()
    target = next(f for f in table.scan().plan_files()).file
    base = table.location().rstrip("/")
    snapshot_id = int.from_bytes(os.urandom(7), "big")
    seq = meta.next_sequence_number()
    part_value = target.partition
    delete_path = f"{base}/data/category={part_value[0]}/pos-deletes-{snapshot_id}.parquet"
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"file_path": [target.file_path], "pos": pa.array([0], pa.int64())}), buf)
    data = buf.getvalue().to_pybytes()
    with io.new_output(delete_path).create(overwrite=True) as f:
        f.write(data)
    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=delete_path,
        file_format=FileFormat.PARQUET,
        partition=Record(part_value[0]),
        record_count=1,
        file_size_in_bytes=len(data),
    )
    delete_file.spec_id = meta.default_spec_id
    manifest_path = f"{base}/metadata/{snapshot_id}-deletes-m0.avro"
    with DeleteManifestWriter(table.spec(), table.schema(), io.new_output(manifest_path), snapshot_id, "deflate") as w:
        w.add_entry(
            ManifestEntry.from_args(
                status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id, sequence_number=None,
                file_sequence_number=None, data_file=delete_file,
            )
        )
    delete_manifest = w.to_manifest_file()
    list_path = f"{base}/metadata/snap-{snapshot_id}-1-deletes.avro"
    with write_manifest_list(2, io.new_output(list_path), snapshot_id, parent.snapshot_id, seq, "deflate") as lw:
        lw.add_manifests(parent.manifests(io) + [delete_manifest])
    snapshot = Snapshot(
        snapshot_id=snapshot_id,
        parent_snapshot_id=parent.snapshot_id,
        sequence_number=seq,
        timestamp_ms=int(time.time() * 1000),
        manifest_list=list_path,
        summary=Summary(operation=Operation.DELETE, **{"added-position-delete-files": "1"}),
        schema_id=meta.current_schema_id,
    )
    with table.transaction() as tx:
        tx._apply(
            (AddSnapshotUpdate(snapshot=snapshot), SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=snapshot_id)),
            (AssertRefSnapshotId(ref="main", snapshot_id=parent.snapshot_id),),
        )


def make_t(catalog, name, io):
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="category"))
    table = catalog.create_table(f"db.{name}", schema=SCHEMA, partition_spec=spec, properties={"format-version": "2"})
    table.append(rows(0, 30))
    table.append(rows(30, 30))
    table.append(rows(60, 30, categories=("d",)))
    table.overwrite(rows(100, 10), overwrite_filter=EqualTo("category", "a"))
    table.delete(EqualTo("category", "b"))
    table = catalog.load_table(f"db.{name}")
    write_stats_files(table, io)
    table = catalog.load_table(f"db.{name}")
    add_position_deletes(table, io)
    return catalog.load_table(f"db.{name}")


def make_sibling(catalog, name):
    table = catalog.create_table(f"db.{name}", schema=SCHEMA, properties={"format-version": "2"})
    table.append(rows(0, 10))
    table.append(rows(10, 10))
    return table


def make_v1(catalog, name):
    table = catalog.create_table(f"db.{name}", schema=SCHEMA, properties={"format-version": "1"})
    table.append(rows(0, 20))
    table.append(rows(20, 20))
    table.overwrite(rows(40, 5))
    return table


def make_big(catalog, name, files, snapshots, io):
    """`files` tiny parquet files under the table's data dir, registered with add_files."""
    table = catalog.create_table(f"db.{name}", schema=SCHEMA, properties={"format-version": "2"})
    base = table.location().rstrip("/")
    buf = pa.BufferOutputStream()
    pq.write_table(rows(0, 1), buf)
    data = buf.getvalue().to_pybytes()
    per_snapshot = files // snapshots
    for s in range(snapshots):
        paths = []
        for i in range(per_snapshot):
            path = f"{base}/data/s{s:03d}/f{i:07d}.parquet"
            with io.new_output(path).create(overwrite=True) as f:
                f.write(data)
            paths.append(path)
        table.add_files(paths, check_duplicate_files=False)
        print(f"snapshot {s + 1}/{snapshots}: {len(paths)} files", file=sys.stderr)
    return catalog.load_table(f"db.{name}")


def make_big_fast(catalog, name, files, snapshots, args):
    """Like make_big, without reading every file back: the data files are written directly
    (local: plain writes; S3: boto3 with 32 threads) and registered with a fast append of
    DataFile entries. `--no-data` writes the manifests only (a memory benchmark of discovery
    at 1M files; not-found counts as deleted)."""
    from concurrent.futures import ThreadPoolExecutor

    table = catalog.create_table(f"db.{name}", schema=SCHEMA, properties={"format-version": "2"})
    base = table.location().rstrip("/")
    buf = pa.BufferOutputStream()
    pq.write_table(rows(0, 1), buf)
    data = buf.getvalue().to_pybytes()
    per_snapshot = files // snapshots
    s3 = None
    if base.startswith("s3://"):
        import boto3

        s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name="us-east-1")

    def put(path):
        if args.no_data:
            return
        if s3 is not None:
            bucket, key = path[5:].split("/", 1)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            local = path.removeprefix("file://")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(data)

    with ThreadPoolExecutor(32 if s3 is not None else 1) as pool:
        for s in range(snapshots):
            paths = [f"{base}/data/s{s:03d}/f{i:07d}.parquet" for i in range(per_snapshot)]
            list(pool.map(put, paths))
            with table.transaction() as tx:
                with tx.update_snapshot().fast_append() as append:
                    for path in paths:
                        df = DataFile.from_args(
                            content=DataFileContent.DATA,
                            file_path=path,
                            file_format=FileFormat.PARQUET,
                            partition=Record(),
                            record_count=1,
                            file_size_in_bytes=len(data),
                        )
                        df.spec_id = 0
                        append.append_data_file(df)
            print(f"snapshot {s + 1}/{snapshots}: {len(paths)} files", file=sys.stderr)
    return catalog.load_table(f"db.{name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--catalog-dir")
    p.add_argument("--s3-endpoint")
    p.add_argument("--tables", default="t,t_2,u")
    p.add_argument("--files", type=int, default=0)
    p.add_argument("--snapshots", type=int, default=20)
    p.add_argument("--name", default="big")
    p.add_argument("--fast", action="store_true", help="write data files directly, no add_files")
    p.add_argument("--no-data", action="store_true", help="with --fast: manifests only")
    args = p.parse_args()
    catalog = catalog_for(args)
    io = load_file_io(catalog.properties, location=args.warehouse)
    made = []
    for name in [t for t in args.tables.split(",") if t]:
        if name.startswith("t_") or name == "sibling":
            made.append(make_sibling(catalog, name))
        elif name.startswith("t"):
            made.append(make_t(catalog, name, io))
        elif name.startswith("u"):
            made.append(make_v1(catalog, name))
    if args.files and args.fast:
        for name in args.name.split(","):
            made.append(make_big_fast(catalog, name, args.files, args.snapshots, args))
    elif args.files:
        made.append(make_big(catalog, args.name, args.files, args.snapshots, io))
    for table in made:
        print(
            json.dumps(
                {
                    "name": table.name()[-1],
                    "location": table.location(),
                    "metadata_location": table.metadata_location,
                    "table_uuid": str(table.metadata.table_uuid),
                    "catalog_uri": catalog.properties["uri"],
                }
            )
        )


if __name__ == "__main__":
    main()
