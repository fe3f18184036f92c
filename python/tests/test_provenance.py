"""Manifests through the bindings: create, verify, save/load, sign."""

from __future__ import annotations

import json
import pathlib

import pytest

import mithridate as m


def _dataset(root: pathlib.Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "train.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": f"sample {i}", "label": i % 3}) + "\n" for i in range(50))
    )
    (root / "sub" / "eval.csv").write_text("id,x,label\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(20)))
    (root / "README").write_text("not a record file\n")


def test_create_verify_and_roundtrip(tmp_path):
    _dataset(tmp_path / "data")
    man = m.create_manifest(tmp_path / "data", records=True, metadata={"source": "unit-test", "license": "CC0-1.0"})
    assert len(man.root) == 64 and man.algorithm == "blake3"
    assert man.paths == ["README", "sub/eval.csv", "train.jsonl"]
    assert man.record_count == 70
    by_path = {f["path"]: f for f in man.files}
    assert by_path["train.jsonl"]["records"] == 50 and by_path["README"]["records"] is None
    assert man.to_dict()["metadata"] == {"source": "unit-test", "license": "CC0-1.0"}

    res = m.verify_manifest(tmp_path / "data", man)
    assert res.ok and bool(res) and res.mismatches == 0
    assert (res.files_checked, res.records_checked) == (3, 70)

    path = tmp_path / "manifest.json"
    man.save(path)
    again = m.Manifest.load(path)
    assert again == man and again.root == man.root
    assert m.Manifest.from_json(man.to_json()) == man
    assert m.Manifest.from_json(path.read_bytes()) == man
    # Hashing is deterministic, and the algorithm changes the root.
    assert m.create_manifest(tmp_path / "data", records=True, metadata={"source": "unit-test", "license": "CC0-1.0"}) == man
    assert m.create_manifest(tmp_path / "data", algorithm="sha256").root != man.root


def test_verify_names_the_changed_record(tmp_path):
    data = tmp_path / "data"
    _dataset(data)
    man = m.create_manifest(data, records=True)
    lines = (data / "train.jsonl").read_text().splitlines(keepends=True)
    lines[7] = json.dumps({"id": 7, "text": "poisoned", "label": 0}) + "\n"
    (data / "train.jsonl").write_text("".join(lines))
    (data / "extra.bin").write_bytes(b"\x00")
    res = man.verify(data)
    assert not res.ok
    assert "added: extra.bin" in res.changes
    assert ("train.jsonl", "record 7 (id 7) changed") in res.record_changes
    d = res.to_dict()
    assert d["root"] == man.root and len(d["changes"]) == 2


def test_manifest_beside_the_data_is_excluded(tmp_path):
    data = tmp_path / "data"
    _dataset(data)
    out = data / "manifest.json"
    man = m.create_manifest(data, exclude=[out])
    man.save(out)
    assert "manifest.json" not in man.paths
    assert man.verify(data, ignore=[out]).ok


def test_sign_and_verify_signature(tmp_path):
    data = tmp_path / "data"
    _dataset(data)
    man = m.create_manifest(data, records=True)
    priv, pub = m.generate_keypair(tmp_path / "keys")
    env = m.sign(man, priv)
    assert json.loads(env)["payloadType"] == "application/vnd.in-toto+json"
    assert m.verify_signature(env, [pub]) == man
    other_priv, other_pub = m.generate_keypair(tmp_path / "other")
    with pytest.raises(m.CryptoError):
        m.verify_signature(env, [other_pub])
    tampered = json.loads(env)
    tampered["payload"] = tampered["payload"][:-8] + "AAAAAAA="
    with pytest.raises(m.MithridateError):
        m.verify_signature(json.dumps(tampered), [pub])


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(m.IoError, match="missing"):
        m.create_manifest(tmp_path / "missing")
    with pytest.raises(m.InvalidParameterError, match="algorithm"):
        m.create_manifest(tmp_path, algorithm="md5")
    with pytest.raises(m.InvalidParameterError, match="unknown key `owner`"):
        m.create_manifest(tmp_path, metadata={"owner": "x"})
    with pytest.raises(m.ParseError):
        m.Manifest.from_json('{"schema": 1}')
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(m.ParseError, match="bad.json"):
        m.Manifest.load(bad)


def test_shard_manifests_merge_into_the_single_machine_root(tmp_path):
    import pickle

    data = tmp_path / "data"
    _dataset(data)
    whole = m.create_manifest(data, records=True)
    a = m.create_shard_manifest(data, ["train.jsonl"], records=True)
    b = m.create_shard_manifest(data, [data / "sub" / "eval.csv"], records=True)
    c = m.manifest_from_bytes([("README", (data / "README").read_bytes())], records=True)
    assert a.paths == ["train.jsonl"] and b.paths == ["sub/eval.csv"]
    shards = [pickle.loads(pickle.dumps(x)) for x in (c, a, b)]
    merged = m.merge_manifests(shards)
    assert merged.root == whole.root
    assert merged.paths == whole.paths and merged.record_count == whole.record_count
    assert m.verify_manifest(data, merged).ok
    # A retried shard counts once; conflicting content is refused.
    assert m.merge_manifests([a, a, b, c]).root == whole.root
    fake = m.manifest_from_bytes([("train.jsonl", b'{"id": 1}\n')], records=True)
    with pytest.raises(m.MithridateError, match="train.jsonl"):
        m.merge_manifests([a, fake])
    with pytest.raises(m.MithridateError):
        m.merge_manifests([])
    with pytest.raises(m.MithridateError):
        m.create_shard_manifest(data, ["../outside.txt"])
