"""Loading a model version once for a whole scoring job, and the batch predict function of each flavor.

The native flavors (sklearn, pytorch) predict straight from Arrow batches through one numpy copy; anything else
goes through MLflow's pyfunc on a pandas frame. :class:`FeatureSpec` is what the schema check compares the data to.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import (
    MlopsConfigError,
    ModelRegistryError,
    SchemaMismatch,
    ScoringError,
    first_line,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import numpy as np
    import pyarrow as pa

    from airflow_mlops.core.scoring.refs import ModelRef

logger = logging.getLogger(__name__)


class ModelFlavor(enum.StrEnum):
    """How predictions are computed: ``auto`` picks the native flavor (sklearn, pytorch) when the model has one."""

    AUTO = "auto"
    NATIVE = "native"
    PYFUNC = "pyfunc"


@dataclass(frozen=True)
class FeatureSpec:
    """One input column the model needs: its name and MLflow type (``double``, ``long``, ``string``...)."""

    name: str
    type: str
    required: bool = True


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
    except Exception as err:  # noqa: BLE001 - any artifact-store error becomes one ModelRegistryError naming the model
        raise ModelRegistryError(
            f"downloading {ref.uri} ({ref.requested_uri}) failed: {first_line(err)}. Check the artifact store."
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


@dataclass(frozen=True)
class ModelInputs:
    """
    What the schema check and a scoring engine need to know about a version without loading it.

    ``prediction_type`` is the Spark SQL type of one prediction (``long``, ``double``, ``string``...) and
    ``prediction_width`` the number of prediction columns (1, or ``k`` for a ``(-1, k)`` output), both read
    from the output signature (``double`` and 1 when the model has none).
    """

    ref: ModelRef
    features: list[FeatureSpec]
    signature_kind: str
    flavors: tuple[str, ...]
    prediction_type: str
    prediction_width: int

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


_SPARK_TYPES = {
    "long": "long",
    "int64": "long",
    "integer": "int",
    "int32": "int",
    "double": "double",
    "float64": "double",
    "float": "float",
    "float32": "float",
    "boolean": "boolean",
    "bool": "boolean",
    "string": "string",
    "str": "string",
    "object": "string",
}


def _prediction_shape(signature: Any) -> tuple[str, int]:
    outputs = signature.outputs if signature is not None else None
    if outputs is None or not outputs.inputs:
        return "double", 1
    if not outputs.is_tensor_spec():
        specs = outputs.inputs
        types = {getattr(s.type, "name", None) or str(s.type) for s in specs}
        spark = _SPARK_TYPES.get(types.pop(), "double") if len(types) == 1 else "double"
        return spark, len(specs)
    spec = outputs.inputs[0]
    shape: tuple[Any, ...] = tuple(getattr(spec, "shape", None) or ())
    width = shape[-1] if len(shape) >= 2 and shape[-1] not in (-1, None) else 1
    return _SPARK_TYPES.get(str(getattr(spec, "type", "")), "double"), int(width)


def read_model_inputs(ref: ModelRef, *, feature_columns: Sequence[str] | None = None) -> ModelInputs:
    """
    Read a version's ``MLmodel`` only (no weights): its input features, flavors and prediction shape.

    Raises ModelRegistryError when the metadata cannot be read and SchemaMismatch as :func:`load_model` does
    for a model without a usable signature.
    """
    import mlflow.models

    try:
        info = mlflow.models.get_model_info(ref.uri)
    except Exception as err:  # noqa: BLE001 - any artifact-store error becomes one ModelRegistryError naming the model
        raise ModelRegistryError(
            f"reading the MLmodel of {ref.uri} ({ref.requested_uri}) failed: {first_line(err)}. "
            "Check the artifact store."
        ) from None
    features, kind = _features_from_signature(info, ref, feature_columns)
    prediction_type, width = _prediction_shape(info.signature)
    return ModelInputs(
        ref=ref,
        features=features,
        signature_kind=kind,
        flavors=tuple(sorted(info.flavors or {})),
        prediction_type=prediction_type,
        prediction_width=width,
    )


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
    matrix: np.ndarray = out
    return matrix


def _numeric_dtype(features: Sequence[FeatureSpec]) -> Any:
    import numpy as np

    types = {f.type for f in features}
    if types <= {"float"}:
        return np.float32
    if types <= {"double", "float", "long", "integer", "numeric"}:
        return np.float64
    return None


def _sklearn_predict(  # noqa: C901 - picks one of four predict paths by the model's fitted names and dtypes
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
            except Exception:  # noqa: BLE001 - a model that cannot take the array has no fast path: the frame path decides
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
