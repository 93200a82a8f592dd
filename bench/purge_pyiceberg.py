"""pyiceberg's own purge of a table, for the purge benchmark (bench/purge.sh).

    purge_pyiceberg.py --catalog-uri sqlite:///... --warehouse URI [--s3-endpoint URL] --table db.name
"""

import argparse
import time
import warnings

from pyiceberg.catalog.sql import SqlCatalog

warnings.filterwarnings("ignore")

p = argparse.ArgumentParser()
p.add_argument("--catalog-uri", required=True)
p.add_argument("--warehouse", required=True)
p.add_argument("--s3-endpoint")
p.add_argument("--table", required=True)
args = p.parse_args()
props = {"uri": args.catalog_uri, "warehouse": args.warehouse}
if args.s3_endpoint:
    props.update({"s3.endpoint": args.s3_endpoint, "s3.access-key-id": "test", "s3.secret-access-key": "test",
                  "s3.region": "us-east-1", "s3.force-virtual-addressing": "false"})
catalog = SqlCatalog("bench", **props)
started = time.monotonic()
catalog.purge_table(args.table)
print(f"{time.monotonic() - started:.3f}")
