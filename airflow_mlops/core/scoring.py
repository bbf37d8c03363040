"""Streaming batch inference: score a dataset of any size with one registered model version, exactly once.

The flow of :func:`run_batch_inference` (framework-free: no Airflow, heavy libraries imported lazily):

1. resolve ``models:/<name>@<alias>`` (or ``/<version>``, ``/latest``) to one concrete version, once;
2. skip the work when the manifest at the output proves the same input and model version were already scored;
3. download and load the model once, in its native flavor (sklearn, pytorch) when it has one, pyfunc otherwise;
4. check the input schema (every file's) against the model signature before anything is written;
5. stream Arrow record batches (bounded memory), predict, and write predictions plus passthrough columns to a
   hidden temporary file beside the output; rename it into place when complete;
6. write the manifest last (rows, model name/version/run, input fingerprint, output schema, elapsed).

Sharding: :func:`plan_shards` splits a dataset folder into groups of files (one mapped task each, every shard
pinned to the same model version), and :func:`combine_shards` checks the per-shard manifests and writes the
manifest of the combined dataset. ``python -m airflow_mlops.core.scoring`` runs one scoring job (or shard) from
the command line, which is what a KubernetesPodOperator pod runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import json
import logging
import math
import os
import posixpath
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_mod
from airflow_mlops.core.storage import (
    TMP_PREFIX,
    atomic_write,
    check_uri,
    exclusive,
    get_fs,
    join_uri,
    read_json,
    remove,
    to_uri,
    write_json,
)
from airflow_mlops.core.tags import PARQUET_MODEL_KEY
from airflow_mlops.exceptions import (
    DatasetError,
    DatasetNotFound,
    MlopsConfigError,
    ModelNotFound,
    ModelRegistryError,
    SchemaMismatch,
    ScoringError,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from mlflow import MlflowClient

    from airflow_mlops.core.data import DatasetRef

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
DEFAULT_PREDICTION_COLUMN = "prediction"
DEFAULT_BATCH_SIZE = 65_536
DEFAULT_PROGRESS_INTERVAL = 5.0
COMBINED_MANIFEST_NAME = "_manifest.json"
PART_TEMPLATE = "part-{index:05d}.parquet"
_PART_RE = re.compile(r"^part-\d{5}\.parquet$")
_MODEL_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))?/?$")


class ModelFlavor(enum.StrEnum):
    """How predictions are computed: ``auto`` picks the native flavor (sklearn, pytorch) when the model has one."""

    AUTO = "auto"
    NATIVE = "native"
    PYFUNC = "pyfunc"


# ------------------------------------------------------------------------------------------------ model refs
@dataclass(frozen=True)
class ModelRef:
    """One concrete registered model version, resolved once from whatever URI the user gave."""

    name: str
    version: str
    run_id: str | None
    requested_uri: str
    alias: str | None = None
    source: str | None = None

    @property
    def uri(self) -> str:
        """The concrete URI (``models:/<name>/<version>``) every shard and retry loads."""
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        return f"{self.name}@{self.alias} (v{self.version})" if self.alias else f"{self.name} v{self.version}"


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """Split a registry URI into ``(name, alias, version)``; raise MlopsConfigError for any other form."""
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise MlopsConfigError(
            "model URI is empty; give a registry URI such as models:/churn@champion or models:/churn/3."
        )
    match = _MODEL_URI_RE.match(model_uri.strip())
    if not match:
        raise MlopsConfigError(
            f"model URI {model_uri!r} is not a registry URI; batch inference takes models:/<name>@<alias>, "
            "models:/<name>/<version> or models:/<name>/latest (register the model first)."
        )
    return match["name"], match["alias"], match["version"]


def resolve_model(client: MlflowClient, model_uri: str) -> ModelRef:
    """Resolve a registry URI to one concrete version; ModelNotFound names the aliases or versions that exist."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(model_uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as err:
        if _is_not_found(err):
            raise ModelNotFound(
                f"registered model {name!r} (from {model_uri}) does not exist in the MLflow registry"
                f"{_known_models_hint(client, name)}; register a model version under that name first, or fix "
                "the name."
            ) from None
        raise ModelRegistryError(f"looking up registered model {name!r} failed: {_short(err)}") from None
    aliases = dict(getattr(registered, "aliases", None) or {})
    try:
        if alias is not None:
            if alias not in aliases:
                known = ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"
                raise ModelNotFound(
                    f"registered model {name!r} has no alias {alias!r} (aliases: {known}); promote a version "
                    f"to {alias!r} first or use models:/{name}/<version>."
                )
            mv = client.get_model_version_by_alias(name, alias)
        elif version is None or version.lower() == "latest":
            versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
            if not versions:
                raise ModelNotFound(f"registered model {name!r} has no versions; register one first.")
            mv = max(versions, key=lambda v: int(v.version))
        else:
            if not version.isdigit():
                raise MlopsConfigError(
                    f"model URI {model_uri!r} has version {version!r}; give a number, 'latest' or use @<alias>."
                )
            mv = client.get_model_version(name, version)
    except MlflowException as err:
        if _is_not_found(err):
            raise ModelNotFound(
                f"version {version!r} of registered model {name!r} does not exist "
                f"({_known_versions_hint(client, name)}aliases: {aliases or 'none'}); use one of those "
                "versions or an alias."
            ) from None
        raise ModelRegistryError(f"resolving {model_uri} failed: {_short(err)}") from None
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id or None,
        requested_uri=model_uri.strip(),
        alias=alias,
        source=getattr(mv, "source", None),
    )


def _known_models_hint(client: MlflowClient, name: str) -> str:
    """`` (did you mean 'churn'?)`` or a few registered model names; empty when the registry cannot say."""
    import difflib

    try:
        names = sorted(m.name for m in client.search_registered_models(max_results=1000))
    except Exception:  # the hint is a courtesy: never hide the not-found error behind another one
        return ""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if not names:
        return " (the registry has no registered models)"
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f" (registered models: {names[:10]}{more})"


def _known_versions_hint(client: MlflowClient, name: str) -> str:
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except Exception:
        return ""
    return f"versions: {versions or 'none'}; "


def _is_not_found(err: Exception) -> bool:
    code = str(getattr(err, "error_code", ""))
    return "RESOURCE_DOES_NOT_EXIST" in code or "NOT_FOUND" in code or "not found" in str(err).lower()


# ------------------------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class FeatureSpec:
    """One input column the model needs: its name and MLflow type (``double``, ``long``, ``string``...)."""

    name: str
    type: str
    required: bool = True


# MLflow column type -> predicate over the Arrow type of a column that may feed it without loss.
def _accepts(mlflow_type: str, arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    t = pa.types
    small_int = t.is_int8(arrow_type) or t.is_int16(arrow_type) or t.is_uint8(arrow_type)
    int32ish = small_int or t.is_int32(arrow_type) or t.is_uint16(arrow_type)
    if mlflow_type == "double":
        return t.is_floating(arrow_type) or int32ish or t.is_uint32(arrow_type)
    if mlflow_type == "float":
        return t.is_float16(arrow_type) or t.is_float32(arrow_type) or small_int
    if mlflow_type == "long":
        return t.is_integer(arrow_type) and not t.is_uint64(arrow_type)
    if mlflow_type == "integer":
        return int32ish
    if mlflow_type == "boolean":
        return t.is_boolean(arrow_type)
    if mlflow_type == "string":
        return t.is_string(arrow_type) or t.is_large_string(arrow_type)
    if mlflow_type == "binary":
        return t.is_binary(arrow_type) or t.is_large_binary(arrow_type)
    if mlflow_type == "datetime":
        return t.is_timestamp(arrow_type) or t.is_date(arrow_type)
    if mlflow_type == "numeric":  # tensor signatures: any number
        return t.is_floating(arrow_type) or t.is_integer(arrow_type) or t.is_boolean(arrow_type)
    return True  # types we do not check (arrays, objects, any): the model itself validates them


_NUMPY_TO_MLFLOW = {
    "float64": "double",
    "float32": "float",
    "int64": "long",
    "int32": "integer",
    "bool": "boolean",
}


# ------------------------------------------------------------------------------------------------ loading
@dataclass
class LoadedModel:
    """A model loaded once for a whole scoring job: its version, features and a batch predict function."""

    ref: ModelRef
    flavor: str  # "sklearn" | "pytorch" | "pyfunc"
    features: list[FeatureSpec]
    predict_fn: Callable[[pa.RecordBatch], Any]
    signature_kind: str  # "columns" | "tensor" | "none"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def predict(self, batch: pa.RecordBatch) -> Any:
        return self.predict_fn(batch)


@contextlib.contextmanager
def quiet_skops_type_scan() -> Iterator[None]:
    """
    Silence the warnings skops' type lookup raises while it loads a model.

    To name the module of each type it loads, skops calls ``getattr(module, name)`` on every module in
    ``sys.modules``; on an Airflow worker that touches Airflow's deprecated module aliases, and each touch
    warns (~1,100 ``DeprecatedImportWarning`` lines per load in a task log). Only warnings raised from that
    one skops function are ignored; every other warning still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"skops\.io\._utils")
        yield


def load_model(
    ref: ModelRef,
    *,
    flavor: str = ModelFlavor.AUTO,
    feature_columns: Sequence[str] | None = None,
    local_dir: str | None = None,
) -> LoadedModel:
    """
    Download ``ref`` once and load it: the native sklearn/pytorch flavor when allowed, pyfunc otherwise.

    The tracking/registry URIs and credentials come from MLflow's environment (inside ``MlflowHook.session``
    or the ``MLFLOW_*`` variables of a pod).
    """
    import mlflow
    from mlflow.models import Model

    if flavor not in (ModelFlavor.AUTO, ModelFlavor.NATIVE, ModelFlavor.PYFUNC):
        raise MlopsConfigError(f"flavor {flavor!r} is not one of 'auto', 'native', 'pyfunc'.")
    dst = local_dir or tempfile.mkdtemp(prefix="mlops-model-")
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=dst)
    except Exception as err:
        raise ModelRegistryError(
            f"downloading {ref.uri} ({ref.requested_uri}) failed: {_short(err)}. Check the artifact store."
        ) from None
    meta = Model.load(path)
    features, kind = _features_from_signature(meta, ref, feature_columns)
    flavors = meta.flavors or {}
    chosen = "pyfunc"
    if flavor != ModelFlavor.PYFUNC:
        if "sklearn" in flavors:
            chosen = "sklearn"
        elif "pytorch" in flavors and kind != "none":
            chosen = "pytorch"
        elif flavor == ModelFlavor.NATIVE:
            raise MlopsConfigError(
                f"model {ref.describe()} has flavors {sorted(flavors)}; native scoring supports sklearn and "
                "pytorch. Use flavor='auto' or 'pyfunc'."
            )
    names = [f.name for f in features]
    if chosen == "sklearn":
        import mlflow.sklearn

        with quiet_skops_type_scan():
            raw = mlflow.sklearn.load_model(path)
        fn_name = (flavors.get("python_function") or {}).get("predict_fn", "predict")
        predict_fn = _sklearn_predict(raw, getattr(raw, fn_name), names, features)
    elif chosen == "pytorch":
        import mlflow.pytorch

        raw = mlflow.pytorch.load_model(path)
        predict_fn = _torch_predict(raw, names)
    else:
        with quiet_skops_type_scan():
            pyfunc = mlflow.pyfunc.load_model(path)
        predict_fn = _pyfunc_predict(pyfunc, names)
    logger.info("Loaded %s (%s flavor, %d feature column(s))", ref.describe(), chosen, len(features))
    return LoadedModel(ref=ref, flavor=chosen, features=features, predict_fn=predict_fn, signature_kind=kind)


def _features_from_signature(
    meta: Any, ref: ModelRef, feature_columns: Sequence[str] | None
) -> tuple[list[FeatureSpec], str]:
    signature = meta.signature
    inputs = signature.inputs if signature is not None else None
    if inputs is not None and not inputs.is_tensor_spec() and inputs.has_input_names():
        specs = []
        for col in inputs.inputs:
            col_type = getattr(col.type, "name", None) or str(col.type)
            specs.append(FeatureSpec(col.name, str(col_type), bool(getattr(col, "required", True))))
        if feature_columns and list(feature_columns) != [s.name for s in specs]:
            raise SchemaMismatch(
                f"feature_columns {list(feature_columns)} differ from the signature of {ref.describe()}, which "
                f"needs {[s.name for s in specs]}; drop feature_columns (the signature decides)."
            )
        return specs, "columns"
    kind = "tensor" if inputs is not None else "none"
    if not feature_columns:
        what = "a tensor signature without column names" if inputs is not None else "no signature"
        raise SchemaMismatch(
            f"model {ref.describe()} has {what}; pass feature_columns=[...] (in the order the model expects) "
            "or log the model with a column-based signature (mlflow.models.infer_signature on a DataFrame)."
        )
    width = None
    mtype = "numeric"
    if inputs is not None:
        spec = inputs.inputs[0]
        shape: tuple[Any, ...] = tuple(getattr(spec, "shape", None) or ())
        width = shape[-1] if len(shape) >= 2 and shape[-1] not in (-1, None) else None
        mtype = _NUMPY_TO_MLFLOW.get(str(getattr(spec, "type", "")), "numeric")
        mtype = "double" if mtype == "float" else mtype  # any float column converts to the tensor's dtype
    if width is not None and width != len(feature_columns):
        raise SchemaMismatch(
            f"model {ref.describe()} takes tensors of {width} feature(s) but feature_columns names "
            f"{len(feature_columns)}: {list(feature_columns)}."
        )
    return [FeatureSpec(c, mtype) for c in feature_columns], kind


def _matrix(batch: pa.RecordBatch, names: Sequence[str], dtype: Any, order: str) -> np.ndarray:
    """The feature columns of ``batch`` as one 2-D array (a single copy out of Arrow)."""
    import numpy as np

    n = batch.num_rows
    out = np.empty((n, len(names)), dtype=dtype, order=order)  # type: ignore[call-overload]
    for j, name in enumerate(names):
        out[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
    return out


def _numeric_dtype(features: Sequence[FeatureSpec]) -> Any:
    import numpy as np

    types = {f.type for f in features}
    if types <= {"float"}:
        return np.float32
    if types <= {"double", "float", "long", "integer", "numeric"}:
        return np.float64
    return None


def _sklearn_predict(
    model: Any, method: Callable[[Any], Any], names: list[str], features: Sequence[FeatureSpec]
) -> Callable[[pa.RecordBatch], Any]:
    dtype = _numeric_dtype(features)
    fitted_names = getattr(model, "feature_names_in_", None)
    # Tree ensembles walk each row across features: row-major input is much faster for them. Linear models
    # do not care, and a column-major copy out of Arrow is the cheaper one.
    order = "C" if _is_tree_model(model) else "F"
    if dtype is None:  # mixed or non-numeric features: hand sklearn a DataFrame in signature order

        def predict_frame(batch: pa.RecordBatch) -> Any:
            return method(batch.select(names).to_pandas())

        return predict_frame
    if fitted_names is not None:
        import pandas as pd

        columns = list(fitted_names)
        if sorted(columns) != sorted(names):
            raise SchemaMismatch(
                f"the sklearn model was fitted on columns {columns} but its signature lists {names}; "
                "re-log the model with a matching signature."
            )

        import warnings

        def predict_named(batch: pa.RecordBatch) -> Any:
            return method(pd.DataFrame(_matrix(batch, columns, dtype, order), columns=columns, copy=False))

        def predict_ordered(batch: pa.RecordBatch) -> Any:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                return method(_matrix(batch, columns, dtype, order))

        chosen: list[Callable[[pa.RecordBatch], Any]] = []

        def predict_checked(batch: pa.RecordBatch) -> Any:
            # A model fitted on a frame only checks the names, which we matched (same columns, put in its fitted
            # order): an array then skips sklearn's per-call frame inspection, a third of a linear model's
            # predict. A pipeline may pick columns by name instead, so the first rows decide: the array path
            # is kept only where it predicts exactly what the frame does.
            if not chosen:
                chosen.append(predict_ordered if _same_predictions(batch.slice(0, 256)) else predict_named)
            return chosen[0](batch)

        def _same_predictions(probe: pa.RecordBatch) -> bool:
            import numpy as np

            try:
                fast = np.asarray(predict_ordered(probe))
            except Exception:
                return False
            slow = np.asarray(predict_named(probe))
            return fast.shape == slow.shape and fast.dtype == slow.dtype and np.array_equal(fast, slow)

        return predict_checked

    def predict_array(batch: pa.RecordBatch) -> Any:
        return method(_matrix(batch, names, dtype, order))

    return predict_array


def _is_tree_model(model: Any) -> bool:
    final = model.steps[-1][1] if hasattr(model, "steps") and model.steps else model
    return any(hasattr(final, a) for a in ("_predictors", "estimators_", "tree_", "get_booster", "booster_"))


def _torch_predict(model: Any, names: list[str]) -> Callable[[pa.RecordBatch], Any]:
    import numpy as np
    import torch

    try:
        model.eval()  # dropout/batch-norm in inference mode; pt2 GraphModules are already and refuse eval()
    except NotImplementedError:
        pass

    def predict(batch: pa.RecordBatch) -> Any:
        x = torch.from_numpy(_matrix(batch, names, np.float32, "C"))
        with torch.inference_mode():
            out = model(x)
        if not isinstance(out, torch.Tensor):
            raise ScoringError(f"the pytorch model returned {type(out).__name__}; it must return one tensor.")
        return out.numpy()

    return predict


def _pyfunc_predict(model: Any, names: list[str]) -> Callable[[pa.RecordBatch], Any]:
    def predict(batch: pa.RecordBatch) -> Any:
        return model.predict(batch.select(names).to_pandas())

    return predict


# ------------------------------------------------------------------------------------------------ schema
_NUMERIC_TYPES = frozenset({"double", "float", "long", "integer", "numeric"})


def _is_text(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def check_input_schema(
    model: LoadedModel, arrow_schema: pa.Schema, *, dataset: str, passthrough: Sequence[str] = ()
) -> None:
    """Raise SchemaMismatch naming every missing or mistyped column, the model name and version, and the fix."""
    have = {f.name: f.type for f in arrow_schema}
    missing = [f.name for f in model.features if f.required and f.name not in have]
    bad = [
        f"{f.name} ({have[f.name]}, signature wants {f.type})"
        for f in model.features
        if f.name in have and not _accepts(f.type, have[f.name])
    ]
    missing_pass = [c for c in passthrough if c not in have]
    text_for_numbers = [
        f.name
        for f in model.features
        if f.name in have and f.type in _NUMERIC_TYPES and _is_text(have[f.name])
    ]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if bad:
        problems.append(f"column(s) with types the signature rejects: {', '.join(bad)}")
    if text_for_numbers:
        problems.append(
            f"{text_for_numbers} hold text where the model needs numbers: one non-numeric value (e.g. "
            "'unknown' in a CSV) makes the whole column text, so clean or drop such values, or cast the column"
        )
    if missing_pass:
        problems.append(f"missing passthrough column(s) {missing_pass}")
    if problems:
        raise SchemaMismatch(
            f"dataset {dataset} does not fit model {model.ref.name} v{model.ref.version}: {'; '.join(problems)}. "
            f"The dataset has {sorted(have)}; fix the data (or cast the columns) or score with a model whose "
            "signature matches."
        )


def bad_values_error(
    model: LoadedModel, batch: pa.RecordBatch, *, dataset: str, first_row: int, cause: BaseException
) -> DatasetError | None:
    """
    After the model failed on ``batch``: a DatasetError naming the feature columns with missing (null, NaN)
    or infinite values, their counts and first rows, and the fix; None when the batch has none.

    Only on failure, because many models score missing values themselves (histogram gradient boosting, an
    imputer in the pipeline); sklearn's own message ("Input X contains NaN") names neither column nor row.
    Rows count from 0 over the whole input, in file order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    found, kinds = [], set()
    for name in model.feature_names:
        if name not in batch.schema.names:
            continue
        column = batch.column(name)
        checks = [("missing (null or NaN)", pc.is_null(column, nan_is_null=True))]
        if pa.types.is_floating(column.type):
            checks.append(("infinite", pc.fill_null(pc.is_inf(column), False)))
        for what, mask in checks:
            count = int(pc.sum(mask).as_py() or 0)
            if count:
                first = first_row + int(pc.index(mask, True).as_py())
                found.append(f"{count} {what} value(s) in column {name!r} (first at row {first})")
                kinds.add(what.split()[0])
    if not found:
        return None
    fixes = []
    if "missing" in kinds:
        fixes.append(
            "fill or drop the missing values before scoring, or add an imputer to the model pipeline"
        )
    if "infinite" in kinds:
        fixes.append("replace the infinite values (with null and impute, or clip them) before scoring")
    end = first_row + batch.num_rows - 1
    fix = "; ".join(fixes)
    return DatasetError(
        f"dataset {dataset} holds values model {model.ref.name} v{model.ref.version} cannot score: "
        f"{'; '.join(found)}, counted in rows {first_row}-{end}, the batch it failed on "
        f"({_short(cause).rstrip('.')}). "
        f"{fix[0].upper()}{fix[1:]}. No predictions were written."
    )


@contextlib.contextmanager
def removing_new_folders_on_error(output_uri: str) -> Iterator[None]:
    """
    On an exception, remove the (local) folders above ``output_uri`` that did not exist on entry and are still
    empty, so that a job failing on bad data leaves no empty output folder behind. Object stores have no real
    folders: nothing to do there. ``os.rmdir`` removes empty folders only, never another writer's files.
    """
    from airflow_mlops.core.storage import is_local, local_path

    created: list[str] = []
    if is_local(output_uri):
        folder = os.path.dirname(os.path.abspath(local_path(output_uri)))
        while not os.path.exists(folder):
            created.append(folder)  # deepest first
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    try:
        yield
    except BaseException:
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or already gone): leave it and everything above it
                break
        raise


# ------------------------------------------------------------------------------------------------ results
@dataclass
class ScoringResult:
    """What one scoring job produced (also the manifest's content)."""

    model_name: str
    model_version: str
    model_run_id: str | None
    model_uri: str
    requested_model_uri: str
    flavor: str | None
    input_uri: str
    input_files: list[str] | None
    input_fingerprint: str
    rows: int
    output_uri: str
    manifest_uri: str
    output_written: bool
    output_bytes: int
    output_schema: list[dict[str, str]]
    passthrough_columns: list[str]
    prediction_columns: list[str]
    prediction_column: str
    batch_size: int
    elapsed_s: float
    skipped: bool = False
    created_at: float = field(default_factory=time.time)

    def manifest(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body.pop("skipped")
        body["manifest_format"] = MANIFEST_FORMAT
        body["kind"] = "predictions"
        body["empty"] = self.rows == 0
        return body

    def to_summary(self) -> dict[str, Any]:
        """The small dict an operator returns as XCom."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "model_run_id": self.model_run_id,
            "rows": self.rows,
            "output_uri": self.output_uri,
            "manifest_uri": self.manifest_uri,
            "input_uri": self.input_uri,
            "input_fingerprint": self.input_fingerprint,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    @classmethod
    def from_manifest(cls, body: dict[str, Any], *, skipped: bool = False) -> ScoringResult:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in body.items() if k in names}
        values["skipped"] = skipped
        return cls(**values)


def manifest_uri_for(output_uri: str) -> str:
    """Where the manifest of ``output_uri`` lives: a hidden sibling ``_<file name>.manifest.json``."""
    output_uri = check_uri(output_uri, what="output URI").rstrip("/")
    head, _, tail = output_uri.rpartition("/")
    name = f"_{tail}.manifest.json"
    return f"{head}/{name}" if head else name


def _check_output_uri(output_uri: str) -> str:
    output_uri = check_uri(output_uri, what="output URI")
    if output_uri.endswith("/") or not output_uri.lower().endswith(".parquet"):
        raise MlopsConfigError(
            f"output URI {output_uri!r} must name a .parquet file, e.g. s3://bucket/predictions/2026-11-01.parquet "
            "(to write a folder of parts, shard the job with plan_shards/combine_shards)."
        )
    return output_uri


def _same_job(old: dict[str, Any], ref: ModelRef, fingerprint: str, params: dict[str, Any]) -> bool:
    if old.get("manifest_format") != MANIFEST_FORMAT or old.get("kind") != "predictions":
        return False
    if (old.get("model_name"), str(old.get("model_version"))) != (ref.name, ref.version):
        return False
    if old.get("input_fingerprint") != fingerprint:
        return False
    return all(old.get(k) == v for k, v in params.items())


def _output_intact(old: dict[str, Any]) -> bool:
    if not old.get("output_written"):
        return not _exists(old["output_uri"])
    fs, path = get_fs(old["output_uri"])
    try:
        return int(fs.info(path).get("size") or -1) == int(old.get("output_bytes", -2))
    except FileNotFoundError:
        return False


def _exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return bool(fs.exists(path))


def _read_manifest(uri: str) -> dict[str, Any] | None:
    try:
        body = read_json(uri)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        logger.warning("Ignoring unreadable manifest %s; the job runs again and replaces it", uri)
        return None
    return body if isinstance(body, dict) else None


def remove_stale_temporaries(output_uri: str) -> list[str]:
    """Delete hidden temporary files a killed attempt left beside ``output_uri``; return their URIs."""
    fs, path = get_fs(output_uri)
    parent, name = posixpath.split(path)
    try:
        entries = fs.ls(parent, detail=False)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        base = posixpath.basename(str(entry).rstrip("/"))
        if base.startswith(TMP_PREFIX) and base.endswith((f"-{name}", f"-_{name}.manifest.json")):
            try:
                fs.rm(entry)
                removed.append(to_uri(fs, str(entry)))
            except FileNotFoundError:
                pass
    return removed


# ------------------------------------------------------------------------------------------------ progress
class _Progress:
    def __init__(self, total: int | None, interval: float, log: logging.Logger | Any) -> None:
        self.total, self.interval, self.log = total, interval, log
        self.start = self.last = time.monotonic()
        self.rows = 0

    def update(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.report(now)

    def report(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.rows / elapsed
        if self.total:
            left = (self.total - self.rows) / rate if rate > 0 else math.inf
            self.log.info(
                "Scored %d of %d rows (%.1f%%), %.0f rows/s, ETA %.0f s",
                self.rows,
                self.total,
                100.0 * self.rows / self.total,
                rate,
                left,
            )
        else:
            self.log.info("Scored %d rows, %.0f rows/s", self.rows, rate)


class _Background:
    """Run one function in a daemon thread (the input fingerprint overlaps with scoring)."""

    def __init__(self, fn: Callable[[], str]) -> None:
        self._result: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="mlops-fingerprint")
        self._thread.start()

    def _run(self, fn: Callable[[], str]) -> None:
        try:
            self._result = fn()
        except BaseException as err:  # re-raised in the caller's thread by get()
            self._error = err

    def get(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


# ------------------------------------------------------------------------------------------------ scoring
def _select_files(ref: DatasetRef, input_files: Sequence[str] | None) -> DatasetRef:
    if not input_files:
        return ref
    if not ref.is_dir:
        raise MlopsConfigError(
            f"input_files was given but input {ref.uri} is a single file; input_files selects parts of a folder."
        )
    wanted = [check_uri(f, what="input file").strip("/") for f in input_files]
    by_rel = {posixpath.relpath(f, ref.path): f for f in ref.files}
    missing = [w for w in wanted if w not in by_rel]
    if missing:
        raise DatasetNotFound(
            f"input file(s) {missing} are not data files of dataset {ref.uri} (it has {sorted(by_rel)[:20]}); "
            "plan the shards again."
        )
    return dataclasses.replace(ref, files=tuple(by_rel[w] for w in wanted))


def _check_all_files(model: LoadedModel, ref: DatasetRef, passthrough: Sequence[str]) -> None:
    if ref.format == "parquet":
        for file in ref.files:
            schema = data_mod._open_parquet(ref, file).schema_arrow
            check_input_schema(model, schema, dataset=to_uri(ref.fs, file), passthrough=passthrough)
    else:
        check_input_schema(model, data_mod.schema(ref), dataset=ref.uri, passthrough=passthrough)


def _prediction_arrays(pred: Any, rows: int, column: str) -> list[tuple[str, Any]]:
    import numpy as np
    import pyarrow as pa

    if hasattr(pred, "columns") and hasattr(pred, "iloc"):  # pandas DataFrame
        cols = list(pred.columns)
        if len(cols) == 1:
            return [(column, pa.array(np.asarray(pred.iloc[:, 0])))]
        return [(f"{column}_{c}", pa.array(np.asarray(pred[c]))) for c in cols]
    array = np.asarray(pred)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1:
        if len(array) != rows:
            raise ScoringError(f"the model returned {len(array)} predictions for a batch of {rows} rows.")
        return [(column, pa.array(array))]
    if array.ndim == 2:
        if array.shape[0] != rows:
            raise ScoringError(
                f"the model returned {array.shape[0]} rows of predictions for {rows} input rows."
            )
        return [(f"{column}_{j}", pa.array(array[:, j])) for j in range(array.shape[1])]
    raise ScoringError(
        f"the model returned predictions of shape {array.shape}; expected one or two dimensions."
    )


def score_dataset(model: LoadedModel, input_uri: str, output_uri: str, **options: Any) -> ScoringResult:
    """
    Stream ``input_uri`` through ``model`` into ``output_uri`` exactly once, then write the manifest.

    One writer per output URI: a concurrent attempt on the same output waits for the writer's lock (see
    :func:`airflow_mlops.core.storage.exclusive`), then removes what killed attempts left. Options are those
    of :func:`run_batch_inference` that concern the data (``input_files``, ``passthrough_columns``,
    ``prediction_column``, ``batch_size``, ``fingerprint``, ``progress_interval``, ``log``, ``started``).

    Nothing is written before the schema of every input file passed :func:`check_input_schema`. The data goes
    to a hidden temporary sibling and is renamed into place complete; the previous manifest is removed just
    before that rename and the new one is written last, so a manifest always describes the file beside it.
    """
    output_uri = _check_output_uri(output_uri)
    with _exclusive_output(output_uri, options.get("log") or logger):
        return _score_dataset(model, input_uri, output_uri, **options)


@contextlib.contextmanager
def _exclusive_output(output_uri: str, log: logging.Logger | Any) -> Iterator[None]:
    """Hold the writer's lock of ``output_uri``, then delete the temporaries killed attempts left beside it."""

    def waiting(lock: str) -> None:
        log.info("Waiting for another attempt writing %s to finish (it holds %s)", output_uri, lock)

    with removing_new_folders_on_error(output_uri), exclusive(output_uri, on_wait=waiting):
        removed = remove_stale_temporaries(output_uri)
        if removed:
            log.info("Removed %d temporary file(s) of an interrupted attempt: %s", len(removed), removed)
        yield


def _score_dataset(
    model: LoadedModel,
    input_uri: str,
    output_uri: str,
    *,
    input_files: Sequence[str] | None = None,
    passthrough_columns: Sequence[str] = (),
    prediction_column: str = DEFAULT_PREDICTION_COLUMN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fingerprint: str | None = None,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    log: logging.Logger | Any = None,
    started: float | None = None,
) -> ScoringResult:
    """
    Stream ``input_uri`` through ``model`` into ``output_uri`` exactly once, then write the manifest.

    Nothing is written before the schema of every input file passed :func:`check_input_schema`. The data goes
    to a hidden temporary sibling and is renamed into place complete; the previous manifest is removed just
    before that rename and the new one is written last, so a manifest always describes the file beside it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.core.lineage import fingerprint as content_fingerprint

    log = log or logger
    started = time.monotonic() if started is None else started
    output_uri = _check_output_uri(output_uri)
    if batch_size < 1:
        raise MlopsConfigError(f"batch_size must be a positive number of rows, not {batch_size}.")
    passthrough = list(dict.fromkeys(passthrough_columns or ()))
    clash = [c for c in passthrough if c == prediction_column or c.startswith(f"{prediction_column}_")]
    if clash:
        raise MlopsConfigError(
            f"passthrough column(s) {clash} clash with the prediction column {prediction_column!r}; "
            "rename prediction_column."
        )
    ref = _select_files(data_mod.resolve_dataset(input_uri), input_files)
    _check_all_files(model, ref, passthrough)
    manifest_uri = manifest_uri_for(output_uri)
    total = data_mod.count_rows(ref)
    fp_job = None if fingerprint else _Background(lambda: content_fingerprint(ref))
    features = [f.name for f in model.features if f.name in set(data_mod.column_names(ref))]
    read_cols = list(dict.fromkeys([*features, *passthrough]))
    batches = data_mod.iter_batches(ref, read_cols, batch_size=batch_size)
    progress = _Progress(total, progress_interval, log)
    rows = 0
    pred_names: list[str] = []
    out_schema: pa.Schema | None = None
    first = next((b for b in batches if b.num_rows), None)

    def predict(batch: pa.RecordBatch) -> pa.RecordBatch:
        try:
            raw = model.predict(batch)
        except (ScoringError, SchemaMismatch):
            raise
        except Exception as err:
            bad = bad_values_error(model, batch, dataset=ref.uri, first_row=rows, cause=err)
            if bad is not None:
                raise bad from err
            raise ScoringError(
                f"model {model.ref.name} v{model.ref.version} failed on a batch of {batch.num_rows} rows from "
                f"{ref.uri}: {_short(err)}"
            ) from err
        arrays = [(c, batch.column(c)) for c in passthrough]
        arrays += _prediction_arrays(raw, batch.num_rows, prediction_column)
        return pa.RecordBatch.from_arrays([a for _, a in arrays], names=[n for n, _ in arrays])

    if first is None:
        log.warning(
            "Input %s has no rows: nothing to score. Writing a manifest with rows=0 and no predictions file.",
            ref.uri,
        )
        remove(manifest_uri)
        remove(output_uri)
        output_written, output_bytes = False, 0
    else:
        with atomic_write(output_uri) as handle:
            out = predict(first)
            out_schema = out.schema.with_metadata(
                {PARQUET_MODEL_KEY: f"{model.ref.name}/{model.ref.version}".encode()}
            )
            pred_names = [n for n in out.schema.names if n not in passthrough]
            writer = pq.ParquetWriter(handle, out_schema, compression="snappy")
            try:
                writer.write_batch(out.replace_schema_metadata(out_schema.metadata))
                rows += out.num_rows
                progress.update(out.num_rows)
                for batch in batches:
                    if not batch.num_rows:
                        continue
                    out = predict(batch)
                    if out.schema.names != out_schema.names:
                        raise ScoringError(
                            f"the model returned columns {out.schema.names[len(passthrough) :]} for a later batch "
                            f"but {pred_names} for the first; its output must have a fixed shape."
                        )
                    if not out.schema.equals(out_schema, check_metadata=False):
                        out = out.cast(out_schema)
                    writer.write_batch(out)
                    rows += out.num_rows
                    progress.update(out.num_rows)
            finally:
                writer.close()
            # The old manifest describes the file this rename replaces: drop it first.
            remove(manifest_uri)
        progress.report()
        output_written = True
        fs, path = get_fs(output_uri)
        output_bytes = int(fs.info(path).get("size") or 0)
    input_fingerprint = fingerprint or (fp_job.get() if fp_job else "")
    schema_list = (
        [{"name": f.name, "type": str(f.type)} for f in out_schema] if out_schema is not None else []
    )
    result = ScoringResult(
        model_name=model.ref.name,
        model_version=model.ref.version,
        model_run_id=model.ref.run_id,
        model_uri=model.ref.uri,
        requested_model_uri=model.ref.requested_uri,
        flavor=model.flavor,
        input_uri=ref.uri,
        input_files=list(input_files) if input_files else None,
        input_fingerprint=input_fingerprint,
        rows=rows,
        output_uri=output_uri,
        manifest_uri=manifest_uri,
        output_written=output_written,
        output_bytes=output_bytes,
        output_schema=schema_list,
        passthrough_columns=passthrough,
        prediction_columns=pred_names,
        prediction_column=prediction_column,
        batch_size=batch_size,
        elapsed_s=time.monotonic() - started,
    )
    write_json(manifest_uri, result.manifest())
    log.info(
        "Wrote %d prediction row(s) of %s to %s (manifest %s) in %.1f s",
        rows,
        model.ref.describe(),
        output_uri,
        manifest_uri,
        result.elapsed_s,
    )
    return result


def run_batch_inference(
    client: MlflowClient,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    *,
    input_files: Sequence[str] | None = None,
    passthrough_columns: Sequence[str] = (),
    prediction_column: str = DEFAULT_PREDICTION_COLUMN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    flavor: str = ModelFlavor.AUTO,
    feature_columns: Sequence[str] | None = None,
    force: bool = False,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    log: logging.Logger | Any = None,
) -> ScoringResult:
    """
    The whole job: resolve the model once, skip if already done, load, check the schema, stream, manifest.

    ``client`` is an ``MlflowClient`` whose server MLflow's fluent API also uses (``MlflowHook.session()``
    arranges both). With ``force=True`` the job runs even when the manifest says it is already done.
    """
    log = log or logger
    started = time.monotonic()
    output_uri = _check_output_uri(output_uri)
    input_uri = check_uri(input_uri, what="input URI")
    ref = resolve_model(client, model_uri)
    log.info("Resolved %s to %s (run %s)", model_uri, ref.uri, ref.run_id)
    dataset = _select_files(data_mod.resolve_dataset(input_uri), input_files)
    with _exclusive_output(output_uri, log):  # one writer per output; what killed attempts left goes first
        manifest_uri = manifest_uri_for(output_uri)
        old = None if force else _read_manifest(manifest_uri)
        fingerprint = None
        if old is not None:
            from airflow_mlops.core.lineage import algorithm_of
            from airflow_mlops.core.lineage import fingerprint as content_fingerprint

            # in the manifest's own algorithm: a changed [mlops] fingerprint_algorithm still skips done work
            fingerprint = content_fingerprint(dataset, algorithm=algorithm_of(old.get("input_fingerprint")))
            params = {
                "passthrough_columns": list(dict.fromkeys(passthrough_columns or ())),
                "prediction_column": prediction_column,
                "input_files": list(input_files) if input_files else None,
                "output_uri": output_uri,
            }
            if _same_job(old, ref, fingerprint, params) and _output_intact(old):
                log.info(
                    "Skipping: %s already holds %d row(s) scored by %s v%s from input %s",
                    output_uri,
                    old.get("rows", 0),
                    ref.name,
                    ref.version,
                    fingerprint,
                )
                return ScoringResult.from_manifest(old, skipped=True)
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as model_dir:
            model = load_model(ref, flavor=flavor, feature_columns=feature_columns, local_dir=model_dir)
            return _score_dataset(
                model,
                input_uri,
                output_uri,
                input_files=input_files,
                passthrough_columns=passthrough_columns,
                prediction_column=prediction_column,
                batch_size=batch_size,
                fingerprint=fingerprint,
                progress_interval=progress_interval,
                log=log,
                started=started,
            )


# ------------------------------------------------------------------------------------------------ sharding
@dataclass(frozen=True)
class ShardSpec:
    """One shard of a sharded scoring job: a group of input files and the part file it writes."""

    index: int
    model_uri: str
    input_uri: str
    input_files: list[str]
    output_uri: str

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BatchInferenceOperator.partial(...).expand_kwargs(...)``."""
        return {
            "model_uri": self.model_uri,
            "input_uri": self.input_uri,
            "input_files": list(self.input_files),
            "output_uri": self.output_uri,
        }


def plan_shards(
    input_uri: str, output_dir: str, *, model_uri: str, num_shards: int | None = None
) -> list[ShardSpec]:
    """
    Split a dataset folder into shards of consecutive files (one per file by default, at most ``num_shards``).

    ``model_uri`` should already be concrete (``models:/<name>/<version>``) so every shard scores with the same
    version even if an alias moves mid-run. Shard ``i`` writes ``<output_dir>/part-<i>.parquet``.
    """
    ref = data_mod.resolve_dataset(input_uri)
    if num_shards is not None and num_shards < 1:
        raise MlopsConfigError(f"num_shards must be at least 1, not {num_shards}.")
    rel = [posixpath.relpath(f, ref.path) for f in ref.files] if ref.is_dir else []
    if not ref.is_dir:
        groups: list[list[str]] = [[]]
    else:
        count = min(num_shards or len(rel), len(rel))
        size, extra = divmod(len(rel), count)
        groups, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            groups.append(rel[start:end])
            start = end
    output_dir = check_uri(output_dir, what="output folder").rstrip("/")
    return [
        ShardSpec(
            index=i,
            model_uri=model_uri,
            input_uri=ref.uri,
            input_files=group,
            output_uri=join_uri(output_dir, PART_TEMPLATE.format(index=i)),
        )
        for i, group in enumerate(groups)
    ]


@dataclass
class CombinedResult:
    """The manifest of a sharded job's output folder."""

    output_uri: str
    manifest_uri: str
    model_name: str
    model_version: str
    model_run_id: str | None
    input_uri: str
    rows: int
    parts: list[dict[str, Any]]
    output_schema: list[dict[str, str]]
    removed_stray_parts: list[str]
    elapsed_s: float

    def manifest(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["manifest_format"] = MANIFEST_FORMAT
        body["kind"] = "predictions-combined"
        body["input_fingerprint"] = _combined_fingerprint(self.parts)
        return body

    def to_summary(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_run_id": self.model_run_id,
            "rows": self.rows,
            "output_uri": self.output_uri,
            "manifest_uri": self.manifest_uri,
            "parts": len(self.parts),
        }


def _combined_fingerprint(parts: Sequence[dict[str, Any]]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part.get("input_fingerprint")).encode() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def combine_shards(
    output_dir: str, shard_outputs: Sequence[str], *, log: logging.Logger | Any = None
) -> CombinedResult:
    """
    Check every shard's manifest (present, intact, same model version, same schema), remove part files no
    shard of this plan wrote, and write ``<output_dir>/_manifest.json`` last.
    """
    log = log or logger
    started = time.monotonic()
    output_dir = check_uri(output_dir, what="output folder").rstrip("/")
    if not shard_outputs:
        raise MlopsConfigError(f"no shard outputs to combine into {output_dir}; the plan produced no shards.")
    manifests = []
    for uri in shard_outputs:
        body = _read_manifest(manifest_uri_for(uri))
        if body is None or not _output_intact(body):
            raise ScoringError(
                f"shard output {uri} has no valid manifest; its scoring task did not finish. Re-run that shard."
            )
        manifests.append(body)
    versions = sorted({(m["model_name"], str(m["model_version"])) for m in manifests})
    if len(versions) != 1:
        raise ScoringError(
            f"the shards of {output_dir} were scored by different model versions {versions}; plan the shards "
            "with one concrete version (models:/<name>/<version>) and re-run them."
        )
    schemas = {json.dumps(m["output_schema"]) for m in manifests if m.get("output_written")}
    if len(schemas) > 1:
        raise ScoringError(f"the shards of {output_dir} have different output schemas; re-run the shards.")
    expected = {posixpath.basename(m["output_uri"]) for m in manifests}
    fs, path = get_fs(output_dir)
    stray = []
    for entry in fs.ls(path, detail=False) if fs.exists(path) else []:
        base = posixpath.basename(str(entry).rstrip("/"))
        parts_name = (
            base[1 : -len(".manifest.json")]
            if base.startswith("_") and base.endswith(".manifest.json")
            else base
        )
        if _PART_RE.match(parts_name) and parts_name not in expected:
            fs.rm(entry)
            stray.append(to_uri(fs, str(entry)))
    if stray:
        log.warning("Removed %d part file(s) of an earlier plan from %s: %s", len(stray), output_dir, stray)
    name, version = versions[0]
    result = CombinedResult(
        output_uri=output_dir,
        manifest_uri=join_uri(output_dir, COMBINED_MANIFEST_NAME),
        model_name=name,
        model_version=version,
        model_run_id=manifests[0].get("model_run_id"),
        input_uri=manifests[0].get("input_uri", ""),
        rows=sum(int(m.get("rows", 0)) for m in manifests),
        parts=[
            {
                "output_uri": m["output_uri"],
                "rows": m.get("rows", 0),
                "input_files": m.get("input_files"),
                "input_fingerprint": m.get("input_fingerprint"),
                "output_written": m.get("output_written"),
            }
            for m in manifests
        ],
        output_schema=next((m["output_schema"] for m in manifests if m.get("output_written")), []),
        removed_stray_parts=stray,
        elapsed_s=time.monotonic() - started,
    )
    write_json(result.manifest_uri, result.manifest())
    log.info("Combined %d shard(s), %d row(s) into %s", len(manifests), result.rows, output_dir)
    return result


# ------------------------------------------------------------------------------------------------ helpers
def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_mlops.core.scoring`` (MLflow server and credentials from ``MLFLOW_*`` variables)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_mlops.core.scoring", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--input-uri", required=True)
    parser.add_argument("--output-uri", required=True)
    parser.add_argument(
        "--input-files", default="", help="comma-separated files of the input folder (a shard)"
    )
    parser.add_argument("--passthrough", default="", help="comma-separated columns copied to the output")
    parser.add_argument("--prediction-column", default=DEFAULT_PREDICTION_COLUMN)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--flavor", default=ModelFlavor.AUTO)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from mlflow import MlflowClient

    split = lambda s: [p for p in (x.strip() for x in s.split(",")) if p]  # noqa: E731
    try:
        result = run_batch_inference(
            MlflowClient(),
            args.model_uri,
            args.input_uri,
            args.output_uri,
            input_files=split(args.input_files) or None,
            passthrough_columns=split(args.passthrough),
            prediction_column=args.prediction_column,
            batch_size=args.batch_size,
            flavor=args.flavor,
            force=args.force,
        )
    except (DatasetError, SchemaMismatch, MlopsConfigError, ModelRegistryError, ScoringError) as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_summary()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
