"""A tiny corpus in step 1's layout, shared by the retrieval, chain, panel and evaluation tests."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
from pathlib import Path

from helpers import qa, repos
from helpers.config import WorkshopConfig, load_config

DOWNLOADER = textwrap.dedent('''\
    """Fetch shard files from remote storage into a local cache."""

    import os

    RETRIES = 3


    class ShardDownloader:
        """Downloads shard files from cloud object storage such as S3 buckets.

        Each download goes to a temporary name first and is renamed when complete.
        """

        chunk_bytes = 1 << 20

        def __init__(self, remote: str, local: str) -> None:
            self.remote = remote
            self.local = local

        def download(self, name: str) -> str:
            """Copy one shard file from the bucket to the local cache folder and return its path."""
            tmp = os.path.join(self.local, name + ".tmp")
            final = os.path.join(self.local, name)
            os.replace(tmp, final)
            return final

        def evict(self, name: str) -> None:
            """Delete a cached shard to keep disk usage under the cache limit."""
            os.remove(os.path.join(self.local, name))
            x = 1
            y = 2
            z = 3
            w = 4
            v = 5
            u = 6
            return None


    def merge_index_files(folders: list) -> dict:
        """Combine the index.json files of several shard folders into one index."""
        merged = {"shards": []}
        for folder in folders:
            merged["shards"].append(folder)
        return merged
    ''')

README = textwrap.dedent('''\
    # Tiny streaming

    A toy library used by the tests.

    ## Compression

    Shards may be compressed with zstd or gzip before upload.

    ```python
    # not a heading: inside a code fence
    ```

    ## Shuffling

    Samples are shuffled in blocks so that each node downloads few shards.
    ''')

CONFIG = textwrap.dedent('''\
    # Training settings
    max_duration: 10ep
    optimizer:
      name: decoupled_adamw
      lr: 0.0001
    # Where checkpoints go
    save_folder: s3://bucket/checkpoints
    ''')

HOSTILE = 'def render_banner():\n    """Return the <script>alert("owned")</script> banner <img src=x onerror=alert(1)>."""\n    return "<b>hi</b>"\n'


def write_corpus(work_dir: Path, files: dict[str, str] | None = None, source: str = "tiny") -> list[repos.FileRecord]:
    """A small corpus in step 1's layout (flat text files) and its FileRecords."""
    files = files if files is not None else {"tiny/download.py": DOWNLOADER, "README.md": README,
                                             "conf/train.yaml": CONFIG, "tiny/banner.py": HOSTILE}
    folder = work_dir / "retrieval_data" / source
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for rel, text in files.items():
        flat = folder / (rel.replace("/", "__") + ".txt")
        flat.write_text(text, encoding="utf-8")
        records.append(repos.FileRecord(source, rel, flat, len(text.encode()), text.count("\n")))
    return records


def altered_index(cfg: WorkshopConfig, work_dir: Path, *statements: str) -> WorkshopConfig:
    """A copy of ``cfg``'s index in ``work_dir`` with ``statements`` run on its SQLite tables (an index written by
    another version, or damaged); the config of ``work_dir``."""
    copy = load_config(work_dir=str(work_dir))
    shutil.copytree(cfg.index_dir, copy.index_dir)
    con = sqlite3.connect(copy.index_dir / qa.META_FILE)
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()
    return copy
