"""Type stubs of the native extension ``mithridate._native``."""

from os import PathLike
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]

class MithridateError(Exception):
    """Base class of every error raised by mithridate."""

class InvalidParameterError(MithridateError):
    """A parameter is out of range or unknown (the message names it)."""

class DataError(MithridateError):
    """The data cannot be processed as given."""

class ParseError(MithridateError):
    """A file or document is malformed (the message names file, line and field)."""

class IoError(MithridateError):
    """A file could not be read or written (the message names the path)."""

class CryptoError(MithridateError):
    """A signature, key or digest check failed."""

class ModelError(MithridateError):
    """A model could not be trained or queried."""

class Manifest:
    """A dataset manifest: file (and record) digests folded into one Merkle root."""

    @property
    def root(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def file_count(self) -> int: ...
    @property
    def record_count(self) -> int: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def files(self) -> list[dict[str, Any]]: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...
    @staticmethod
    def from_json(data: Union[str, bytes]) -> Manifest: ...
    @staticmethod
    def load(path: _Path) -> Manifest: ...
    def save(self, path: _Path) -> None: ...
    def verify(self, root: _Path, ignore: Optional[Sequence[_Path]] = None) -> VerifyResult: ...
    def __eq__(self, other: object) -> bool: ...

class VerifyResult:
    """The result of verifying data against a manifest (truthy when it matches)."""

    @property
    def ok(self) -> bool: ...
    @property
    def mismatches(self) -> int: ...
    @property
    def root(self) -> str: ...
    @property
    def files_checked(self) -> int: ...
    @property
    def records_checked(self) -> int: ...
    @property
    def changes(self) -> list[str]: ...
    @property
    def record_changes(self) -> list[tuple[str, str]]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __bool__(self) -> bool: ...

class ScanResult:
    """Everything a scan found: which rows to quarantine and why."""

    @property
    def verdict(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def flagged(self) -> list[int]: ...
    @property
    def flagged_ids(self) -> list[Union[int, str]]: ...
    @property
    def confirmed(self) -> list[int]: ...
    @property
    def scores(self) -> npt.NDArray[np.float64]: ...
    @property
    def metrics(self) -> dict[str, float]: ...
    @property
    def detectors(self) -> list[str]: ...
    @property
    def decisions(self) -> list[dict[str, Any]]: ...
    def report(self) -> dict[str, Any]: ...
    def __len__(self) -> int: ...

class TextStats:
    """First-pass counts of text trigger mining; partitions' statistics merge exactly."""

    def __init__(
        self, n_classes: int, *, max_ngram: int = 3, min_support: int = 3, confirm_log10: float = 6.0
    ) -> None: ...
    @staticmethod
    def from_records(
        texts: Sequence[str],
        labels: Sequence[int],
        n_classes: int,
        *,
        max_ngram: int = 3,
        min_support: int = 3,
        confirm_log10: float = 6.0,
    ) -> TextStats: ...
    def add(self, text: str, label: int) -> None: ...
    def merge(self, other: TextStats) -> None: ...
    @property
    def records(self) -> int: ...
    @property
    def class_records(self) -> list[int]: ...
    @property
    def distinct_ngrams(self) -> int: ...
    def plan(self, catch_all: bool = False) -> TextPlan: ...
    def to_json(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

class TextPlan:
    """Candidate n-grams and the naive Bayes model, sent to every partition."""

    @property
    def candidates(self) -> int: ...
    @property
    def records(self) -> int: ...
    def evidence(self, ids: Sequence[int], texts: Sequence[str], labels: Sequence[int]) -> TextEvidence: ...
    def empty_evidence(self) -> TextEvidence: ...
    def decide(self, evidence: TextEvidence, label_names: Optional[Sequence[str]] = None) -> dict[str, Any]: ...
    def to_json(self) -> str: ...

class TextEvidence:
    """Second-pass evidence; partitions' evidence merges exactly."""

    def merge(self, other: TextEvidence) -> None: ...
    def to_json(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

def create_manifest(
    root: _Path,
    *,
    records: bool = False,
    algorithm: str = "blake3",
    id_field: Optional[str] = None,
    exclude: Optional[Sequence[_Path]] = None,
    metadata: Optional[dict[str, str]] = None,
) -> Manifest: ...
def create_shard_manifest(
    root: _Path,
    files: Sequence[_Path],
    *,
    records: bool = False,
    algorithm: str = "blake3",
    id_field: Optional[str] = None,
) -> Manifest: ...
def manifest_from_bytes(
    items: Sequence[tuple[str, bytes]],
    *,
    records: bool = False,
    algorithm: str = "blake3",
    id_field: Optional[str] = None,
) -> Manifest: ...
def merge_manifests(shards: Sequence[Manifest], *, metadata: Optional[dict[str, str]] = None) -> Manifest: ...
def verify_manifest(
    root: _Path, manifest: Manifest, *, ignore: Optional[Sequence[_Path]] = None
) -> VerifyResult: ...
def generate_keypair(dir: _Path) -> tuple[str, str]: ...
def sign(manifest: Manifest, private_key: _Path) -> str: ...
def verify_signature(envelope: Union[str, bytes], public_keys: Sequence[_Path]) -> Manifest: ...
def scan(
    features: npt.ArrayLike,
    labels: Optional[Sequence[int]] = None,
    *,
    ids: Optional[Sequence[Any]] = None,
    label_names: Optional[Sequence[str]] = None,
    fp_budget: float = 0.005,
    min_votes: int = 3,
    detectors: Optional[Sequence[str]] = None,
    seed: int = 0,
) -> ScanResult: ...
def scan_text(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    ids: Optional[Sequence[Any]] = None,
    label_names: Optional[Sequence[str]] = None,
    max_ngram: int = 3,
    min_support: int = 3,
    confirm_log10: float = 6.0,
    seed: int = 0,
) -> ScanResult: ...
def epsilon(q: float, sigma: float, steps: int, delta: float, accountant: str = "rdp") -> float: ...
def epsilon_rdp(q: float, sigma: float, steps: int, delta: float) -> tuple[float, float]: ...
def epsilon_pld(
    q: float, sigma: float, steps: int, delta: float, discretization: float = 1e-4
) -> float: ...
def calibrate_sigma(
    target_epsilon: float, q: float, steps: int, delta: float, accountant: str = "rdp"
) -> float: ...
def aggregate(
    updates: Union[npt.ArrayLike, Sequence[npt.ArrayLike]],
    method: str = "median",
    *,
    weights: Optional[Sequence[float]] = None,
    beta: float = 0.2,
    byzantine: int = 0,
    keep: Optional[int] = None,
    smoothing: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-6,
    tau: Optional[float] = None,
    iters: int = 3,
) -> tuple[npt.NDArray[np.float32], Optional[list[int]], Optional[int]]: ...
