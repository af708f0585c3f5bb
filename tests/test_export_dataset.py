"""export_dataset: a Parquet dataset that DuckDB reads with the frames' counts and sums;
incremental, replacing a re-saved session's rows; safe when killed; bad destinations."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import a3s_nb
from a3s_nb.exports.parquet import export_dataset
from a3s_nb.frames import schema

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "a3s-code-3.1.0"
PARTS = ("runs", "traces", "verification")

#: Per frame: a column summed to compare (besides the row count).
SUMS = {
    "sessions": "n_tool_calls",
    "messages": "message_index",
    "traces": "duration_ms",
    "runs": "prompt_tokens",
    "run_events": "sequence",
    "spans": "duration_ms",
    "verification": "check_index",
}


def duckdb():
    import duckdb as _duckdb  # part of the test extra: a missing engine fails, never skips

    return _duckdb


def age(store: Path, seconds: float = 60) -> None:
    """Make every file look written a while ago (as a store is between exports)."""
    past = time.time() - seconds
    for p in store.rglob("*.json"):
        os.utime(p, (past, past))


def copy_store(dest: Path, copies: int = 1) -> Path:
    """The fixture store, each session repeated ``copies`` times under new ids."""
    dest.mkdir(parents=True)
    for part in PARTS:
        (dest / part).mkdir()
    for src in FIXTURE.glob("*.json"):
        for k in range(copies):
            stem = src.stem if k == 0 else f"{src.stem}-copy{k}"
            doc = json.loads(src.read_text())
            doc["id"] = stem
            (dest / f"{stem}.json").write_text(json.dumps(doc))
            for part in PARTS:
                frag = FIXTURE / part / src.name
                if frag.exists():
                    shutil.copyfile(frag, dest / part / f"{stem}.json")
    age(dest)
    return dest


def engine_totals(dest: Path, frame: str) -> tuple[int, int]:
    con = duckdb().connect()
    n, total = con.execute(
        f"SELECT count(*), coalesce(sum({SUMS[frame]}), 0) FROM read_parquet("
        f"'{dest}/frame={frame}/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    return int(n), int(total)


def frame_totals(df: pd.DataFrame, frame: str) -> tuple[int, int]:
    return len(df), int(df[SUMS[frame]].sum())


def dataset_state(dest: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(dest)): p.read_bytes()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and "staging" not in p.parts and p.name != "lock"
    }


@pytest.fixture
def store(tmp_path) -> Path:
    return copy_store(tmp_path / "store")


def test_duckdb_reads_every_frame_with_the_frames_counts_and_sums(store, tmp_path):
    dest = tmp_path / "dataset"
    result = export_dataset(store, dest)
    frames = a3s_nb.all_frames(store)
    assert result["written"] == len(frames["sessions"]) == 8
    assert result["errors"] == []
    for name in schema.FRAME_NAMES:
        assert engine_totals(dest, name) == frame_totals(frames[name], name), name
    # a join across frames, as a user would write it: tokens per model
    got = (
        duckdb()
        .sql(
            f"SELECT model, sum(prompt_tokens) AS t FROM read_parquet('{dest}/frame=runs/*/*.parquet')"
            " GROUP BY model ORDER BY model"
        )
        .df()
    )
    want = frames["runs"].groupby("model").prompt_tokens.sum()
    assert dict(zip(got.model, got.t, strict=True)) == {k: int(v) for k, v in want.items()}


def test_schema_is_the_frames_schema(store, tmp_path):
    dest = tmp_path / "dataset"
    export_dataset(store, dest)
    frames = a3s_nb.all_frames(store)
    for name in schema.FRAME_NAMES:
        files = sorted((dest / f"frame={name}").rglob("*.parquet"))
        assert files, name
        meta = pq.read_schema(files[0]).metadata
        assert meta[b"a3s_nb.frame"] == name.encode()
        assert meta[b"a3s_nb.schema_version"] == str(schema.SCHEMA_VERSION).encode()
        back = pd.read_parquet(files[0])
        assert list(back.columns) == [c.name for c in schema.columns(name)]
        for col in schema.columns(name):
            assert str(back[col.name].dtype) == str(frames[name][col.name].dtype), (name, col)


def test_incremental_export_writes_only_changed_sessions(store, tmp_path):
    dest = tmp_path / "dataset"
    first = export_dataset(store, dest)
    assert first["written"] == 8
    again = export_dataset(store, dest)
    assert (again["written"], again["unchanged"], again["files"]) == (0, 8, 0)

    # a session saved again with one run fewer: its rows are replaced, none duplicated
    sid = "dc488148-a475-4c5d-b553-2ee4179ae7fc"
    runs_file = store / "runs" / f"{sid}.json"
    runs = json.loads(runs_file.read_text())
    runs_file.write_text(json.dumps(runs[:-1]))
    past = time.time() - 30
    os.utime(runs_file, (past, past))
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.parquet")}
    third = export_dataset(store, dest)
    assert (third["written"], third["unchanged"]) == (1, 7)
    touched = {p for p in dest.rglob("*.parquet") if before.get(p) != p.stat().st_mtime_ns}
    assert touched and all(p.stem == sid for p in touched)
    frames = a3s_nb.all_frames(store)
    for name in ("runs", "run_events", "spans", "sessions"):
        assert engine_totals(dest, name) == frame_totals(frames[name], name), name
    n_runs = (
        duckdb()
        .connect()
        .execute(
            f"SELECT count(*) FROM read_parquet('{dest}/frame=runs/*/*.parquet') "
            f"WHERE session_id = '{sid}'"
        )
        .fetchone()[0]
    )
    assert n_runs == len(runs) - 1

    # a session deleted from the store: its rows go
    for p in [store / f"{sid}.json", *(store / part / f"{sid}.json" for part in PARTS)]:
        p.unlink(missing_ok=True)
    fourth = export_dataset(store, dest)
    assert fourth["deleted"] == 1
    assert not list(dest.rglob(f"{sid}.parquet"))
    frames = a3s_nb.all_frames(store)
    for name in schema.FRAME_NAMES:
        assert engine_totals(dest, name) == frame_totals(frames[name], name), name


def test_a_file_rewritten_within_its_mtime_granularity_is_noticed(tmp_path):
    store = copy_store(tmp_path / "store")
    for p in store.rglob("*.json"):
        os.utime(p)  # written "now": a rewrite could keep the same mtime and size
    dest = tmp_path / "dataset"
    assert export_dataset(store, dest)["written"] == 8
    assert export_dataset(store, dest)["written"] == 0  # their content was hashed: unchanged
    sid = "dc488148-a475-4c5d-b553-2ee4179ae7fc"
    runs_file = store / "runs" / f"{sid}.json"
    st = runs_file.stat()
    text = runs_file.read_text()
    assert '"status": "completed"' in text
    runs_file.write_text(text.replace('"status": "completed"', '"status": "cancelled"', 1))
    os.utime(runs_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert runs_file.stat().st_size == st.st_size
    result = export_dataset(store, dest)
    assert (result["written"], result["unchanged"]) == (1, 7)
    n = (
        duckdb()
        .connect()
        .execute(
            f"SELECT count(*) FROM read_parquet('{dest}/frame=runs/*/*.parquet') "
            "WHERE status = 'cancelled'"
        )
        .fetchone()[0]
    )
    assert n == 1


def test_corrupt_session_is_reported_and_the_rest_exported(store, tmp_path):
    bad = "60246e33-b01d-47b4-a995-4a89a87f13f3"
    (store / "runs" / f"{bad}.json").write_text("{ not json")
    dest = tmp_path / "dataset"
    result = export_dataset(store, dest)
    assert result["written"] == 7
    assert [e["session_id"] for e in result["errors"]] == [bad]
    assert "runs" in result["errors"][0]["path"]
    assert not list(dest.rglob(f"{bad}.parquet"))
    with pytest.warns(a3s_nb.frames.CorruptSessionWarning):
        frames = a3s_nb.all_frames(store)
    assert engine_totals(dest, "runs") == frame_totals(frames["runs"], "runs")


def test_destination_not_writable(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(a3s_nb.ExportError, match="a-file"):
        export_dataset(store, blocker / "dataset")
    with pytest.raises(a3s_nb.StoreError):
        export_dataset(tmp_path / "no-store", tmp_path / "dataset")


def test_a_crash_after_the_commit_point_is_finished_by_the_next_export(
    store, tmp_path, monkeypatch
):
    from a3s_nb.exports import parquet as export_parquet

    dest = tmp_path / "dataset"
    export_dataset(store, dest)
    for p in store.glob("*.json"):
        p.write_text(p.read_text())  # every session saved again
    age(store)

    moved = []
    real_move = export_parquet._move

    def dies_after_three(fs, src, dst):
        if len(moved) == 3:
            raise KeyboardInterrupt  # the process is interrupted half way through the moves
        moved.append(dst)
        real_move(fs, src, dst)

    monkeypatch.setattr(export_parquet, "_move", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(store, dest)
    # half moved: still no duplicate rows (each session's rows have one file per partition)
    frames = a3s_nb.all_frames(store)
    for name in schema.FRAME_NAMES:
        assert engine_totals(dest, name) == frame_totals(frames[name], name), name
    monkeypatch.setattr(export_parquet, "_move", real_move)
    result = export_dataset(store, dest)  # finishes the plan, then finds nothing to do
    assert result["written"] == 0
    assert not list((dest / "_a3s_nb" / "staging").glob("*"))


KILL_SCRIPT = """
import sys
from a3s_nb.exports.parquet import export_dataset
export_dataset(sys.argv[1], sys.argv[2], full=True)
"""


def test_an_export_killed_half_way_leaves_the_dataset_as_it_was(tmp_path):
    store = copy_store(tmp_path / "store", copies=16)  # 128 sessions: a few seconds to stage
    dest = tmp_path / "dataset"
    export_dataset(store, dest)
    before = dataset_state(dest)
    frames = a3s_nb.all_frames(store)
    counts = {name: engine_totals(dest, name) for name in schema.FRAME_NAMES}
    assert counts["runs"] == frame_totals(frames["runs"], "runs")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(store), str(dest)], env=env)
    staging = dest / "_a3s_nb" / "staging"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(staging.rglob("*.parquet"))) >= 40:  # part way through staging
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the export finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert list(staging.rglob("*.parquet")), "killed before it wrote anything"
    assert dataset_state(dest) == before  # not one byte of the live dataset changed
    for name in schema.FRAME_NAMES:
        assert engine_totals(dest, name) == counts[name], name
    # the next export discards the dead staging area and completes
    result = export_dataset(store, dest, full=True)
    assert result["written"] == 128
    assert not list(staging.glob("*"))
    for name in schema.FRAME_NAMES:
        assert engine_totals(dest, name) == frame_totals(frames[name], name), name


# ----------------------------------------------------------------------------- S3 (moto)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server in its own process on 127.0.0.1, stopped afterwards."""
    import urllib.request

    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    assert server, 'moto_server not found: pip install "moto[server]" (the test extra)'
    port = free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not start in 60 s"
                time.sleep(0.1)
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(k, v)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_export_to_s3_read_back_by_pyarrow_and_duckdb(store, s3_server):
    import boto3
    import pyarrow.dataset as pads
    import s3fs
    from pyarrow import fs as pafs

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="team")
    options = {"endpoint_url": s3_server}
    result = export_dataset(store, "s3://team/a3s", storage_options=options)
    assert result["written"] == 8 and result["errors"] == []
    assert export_dataset(store, "s3://team/a3s", storage_options=options)["written"] == 0

    frames = a3s_nb.all_frames(store)
    # pyarrow's own S3 client, not the one that wrote the files
    s3 = pafs.S3FileSystem(
        endpoint_override=s3_server, access_key="testing", secret_key="testing", region="us-east-1"
    )
    for name in schema.FRAME_NAMES:
        table = pads.dataset(
            f"team/a3s/frame={name}", filesystem=s3, format="parquet", partitioning="hive"
        ).to_table()
        total = pd.Series(table.column(SUMS[name]).to_pandas()).sum()
        assert (table.num_rows, int(total)) == frame_totals(frames[name], name), name
    # DuckDB over the same bucket, through an fsspec file system
    con = duckdb().connect()
    con.register_filesystem(s3fs.S3FileSystem(endpoint_url=s3_server))
    n, tokens = con.execute(
        "SELECT count(*), sum(prompt_tokens) FROM read_parquet("
        "'s3://team/a3s/frame=runs/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert (n, tokens) == frame_totals(frames["runs"], "runs")


def test_missing_bucket_is_a_clear_error(store, s3_server):
    with pytest.raises(a3s_nb.ExportError, match="bucket"):
        export_dataset(
            store, "s3://no-such-bucket/a3s", storage_options={"endpoint_url": s3_server}
        )


def test_cli_export_dataset(store, tmp_path, capsys):
    from a3s_nb.cli import main

    dest = tmp_path / "dataset"
    assert main(["--store", str(store), "export", "dataset", str(dest)]) == 0
    assert "8 sessions written" in capsys.readouterr().out
    assert engine_totals(dest, "spans") == frame_totals(a3s_nb.spans(store), "spans")
    (store / "runs" / "fix-oscar-2-000.json").write_text("[{")
    assert main(["--store", str(store), "export", "dataset", str(dest), "--full"]) == 1
    out, err = capsys.readouterr()
    assert "7 sessions written" in out
    assert "SKIPPED fix-oscar-2-000" in err and "runs" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["--store", str(store), "export", "dataset", str(blocker / "x")]) == 2
    assert "a-file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Spark


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_reads_every_frame_with_the_frames_counts_and_sums(store, tmp_path):
    """Spark in local mode (pyspark with Debian's Java, started here) reads the dataset."""
    from pyspark.sql import SparkSession  # the test extra; Java comes from `make test`

    dest = tmp_path / "dataset"
    export_dataset(store, dest)
    frames = a3s_nb.all_frames(store)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("a3s_nb-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        for name in schema.FRAME_NAMES:
            df = spark.read.parquet(str(dest / f"frame={name}"))
            row = df.selectExpr("count(*) AS n", f"coalesce(sum({SUMS[name]}), 0) AS s").first()
            assert (row["n"], row["s"]) == frame_totals(frames[name], name), name
        runs = spark.read.parquet(str(dest / "frame=runs"))
        assert dict(runs.dtypes)["created_at"] == "timestamp"
        assert dict(runs.dtypes)["cost_usd"] == "double"
        assert dict(runs.dtypes)["day"] == "date"  # the partition
        first = runs.selectExpr("min(created_at) AS t").first()["t"]
        assert first.replace(tzinfo=None) == (
            frames["runs"].created_at.min().tz_convert("UTC").tz_localize(None).to_pydatetime()
        )
    finally:
        spark.stop()
