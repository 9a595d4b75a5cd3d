"""Typed parameters: ``params.yaml`` has one section per stage; this module is the only place it is read.

Unknown keys, wrong types and out-of-range values stop with one line naming the file and the key.
The generator sections under ``train`` are validated by each registered generator's own Config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from synthdata import generators
from synthdata.errors import SynthdataError, shorten


class Section(BaseModel):
    # inf and nan are refused in every float field: a key that may be unbounded says so with null
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PathsParams(Section):
    prepared: str = "data/prepared"
    models: str = "data/models"
    synthetic: str = "data/synthetic"
    augmented: str = "data/augmented"
    reference: str = "data/reference"
    evaluation: str = "data/evaluation"
    published: str = "data/published"
    report: str = "data/report"
    filter: str = "data/filter"


class DataParams(Section):
    source: str = Field("sklearn-digits", description="a registered data source")
    path: str | None = Field(None, description="folder or file for sources that read one")
    image_size: tuple[int, int] | None = Field(
        None, description="[height, width] to bring every image to; null keeps the source's size"
    )
    resize: Literal["error", "resize", "center-crop"] = Field(
        "error", description="images of another size: stop, resize (bicubic) or center-crop/pad"
    )
    channels: Literal["auto", 1, 3] = "auto"

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @field_validator("image_size")
    @classmethod
    def _size_range(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not all(8 <= s <= 64 for s in v):
            raise ValueError("height and width must be between 8 and 64")
        return v

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        from synthdata import sources

        if v not in sources.REGISTRY:
            raise ValueError(f"unknown source {v!r}; choose one of: {', '.join(sorted(sources.REGISTRY))}")
        return v


class PrepareParams(Section):
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="ignored when the source has a test split")
    train_per_class: int | None = Field(
        None, gt=0, description="low-data protocol: keep only this many train images per class (val/test unchanged)"
    )


class RuntimeParams(Section):
    """Where networks run, for every stage that runs them (synthdata/runtime.py)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="CPU threads; 0 uses every core (shared among nproc processes)")
    bf16: Literal["auto"] | bool = Field("auto", description="bf16 autocast in training (auto: see runtime.py)")
    channels_last: Literal["auto"] | bool = Field("auto", description="NHWC memory format in training")
    compile: Literal["auto"] | bool = Field("auto", description="torch.compile of the trained networks' forwards")
    dask_address: str | None = Field(
        None, description="Dask scheduler that samples the shards (or SYNTHDATA_DASK_ADDRESS); null: local processes"
    )
    nproc: Literal["auto"] | Annotated[int, Field(ge=1, le=1024)] = Field(
        "auto", description="training processes (torchrun/DDP); auto: one per visible GPU, 1 without a GPU"
    )


class TrainCommon(Section):
    seed: int = Field(0, ge=0)
    checkpoint_every: int = Field(500, gt=0)
    log_every: int = Field(25, gt=0)
    select_every: int = Field(
        0,
        ge=0,
        description="steps between scorings of the sampling networks on the real val split; the best step's "
        "snapshot is the generator sample uses (synthdata.selection); 0: the last step's",
    )
    select_metric: Literal["val_fid_ratio", "val_class_fid_ratio_max", "val_tstr_error"] = Field(
        "val_tstr_error",
        description="the selection criterion (lower is better); val_tstr_error (train on synthetic, test on val) "
        "trains a classifier per scoring and is the one that predicts the test result (docs/results/quality.md)",
    )
    select_tstr_steps: int = Field(
        500, gt=0, le=100_000, description="steps of the val_tstr_error classifier (evaluate.classifier otherwise)"
    )
    select_images: int = Field(1000, ge=20, le=100_000, description="images generated per scoring (and real floor)")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        max_length=20,
        description="train one run per seed (one after another) and keep the best on the real val split; "
        "empty: one run with train.seed",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v


def _train_model() -> type[Section]:
    fields = {name: (cls.Config, cls.Config()) for name, cls in generators.REGISTRY.items()}
    return create_model("TrainParams", __base__=TrainCommon, **fields)  # type: ignore[call-overload]


TrainParams = _train_model()


class SampleParams(Section):
    seed: int = Field(0, ge=0, le=2**62, description="latent seed of the first image")
    per_class: int = Field(500, gt=0, le=10_000_000, description="images per class (class-balanced)")
    counts: dict[str, int] = Field(
        default_factory=dict, description="per-class counts by class name; overrides per_class"
    )
    batch_size: int = Field(500, gt=0, le=65536)
    workers: int = Field(0, ge=0, le=64, description="local sampling/PNG processes; 0 = one per core")
    shard_size: int = Field(2500, gt=0, le=1_000_000, description="images per shard (the unit of work)")
    format: Literal["imagefolder", "webdataset"] = Field(
        "imagefolder", description="imagefolder: one PNG per image in class folders; webdataset: one tar per shard"
    )
    mixture: bool = Field(
        False,
        description="draw each class from every training seed's selected generator (train.seeds), weighted by "
        "1 / val score; each image's checkpoint_sha256 says which one made it",
    )
    tar_compression: Literal["none", "gzip"] = Field(
        "none",
        description="webdataset shards: none (train-000000.tar) or gzip (.tar.gz: much smaller for small images)",
    )

    @field_validator("counts")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n <= 0}
        if bad:
            raise ValueError(f"counts must be positive, got {bad}")
        return v


class ClassifierParams(Section):
    """The small CNN of the downstream check and of the domain feature extractor."""

    width: int = Field(16, gt=0, le=512)
    feature_dim: int = Field(64, gt=0, le=4096, description="embedding size: the domain FID features")
    steps: int = Field(1000, gt=0, description="training budget in steps, the same for every training set")
    batch_size: int = Field(128, gt=0, le=65536)
    lr: float = Field(0.003, gt=0, le=1)
    weight_decay: float = Field(0.0005, ge=0, le=1)
    eval_every: int = Field(100, gt=0, description="steps between real-val evaluations (model selection)")
    patience: int = Field(4, gt=0, description="evaluations without val improvement before stopping early")
    shift: float = Field(0.0, ge=0, le=16, description="augmentation: random shifts up to this many pixels")
    rotate: float = Field(0.0, ge=0, le=45, description="augmentation: random rotations up to this many degrees")


class FilterParams(Section):
    """Classifier-filtered sampling: a synthetic image is kept only if a classifier trained on the real
    train split (the ``filter`` stage's classifier; it never sees val or test) predicts its label."""

    enabled: bool = False
    min_confidence: float = Field(
        0.0, ge=0, lt=1, description="also require the filter classifier's probability of the label to reach this"
    )
    max_draws: int = Field(
        20, ge=1, le=10_000, description="candidates per kept image before a class is given up on with an error"
    )
    seed: int = Field(0, ge=0)
    classifier: ClassifierParams = ClassifierParams(steps=2000, shift=1.0, rotate=10.0)


class EvaluateParams(Section):
    seed: int = Field(0, ge=0)
    feature_extractor: str = Field(
        "domain",
        description="a registered feature extractor (synthdata.features); "
        "checked by the stages that use it, reference and evaluate",
    )
    inception_weights: str | None = Field(
        None, description="path of weights-inception-2015-12-05-6726825d.pth (for feature_extractor: inception)"
    )
    batch_size: int = Field(500, gt=0, le=65536, description="feature-extraction batch size")
    workers: int = Field(0, ge=0, le=64, description="local feature-extraction processes; 0 = one per core")
    shard_size: int = Field(
        5000, gt=0, le=1_000_000, description="images per feature-extraction task (rounded up to whole batches)"
    )
    seeds: int = Field(3, ge=1, le=20, description="classifier seeds per training set (mean and std)")
    kid_subset_size: int = Field(1000, ge=2)
    kid_subsets: int = Field(100, ge=1)
    prdc_k: int = Field(5, ge=1)
    grid_per_class: int = Field(10, ge=1, le=64, description="sample-grid columns")
    augment_real_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="share of each real+synthetic classifier batch drawn from the real train "
        "split; null: in proportion to the counts (plain concatenation)",
    )
    classifier: ClassifierParams = ClassifierParams()


class GateParams(Section):
    """A synthetic dataset is publishable only when every check holds."""

    max_fid_ratio: float = Field(8.0, gt=0, description="largest allowed fid / fid_floor")
    min_acc_ratio: float = Field(0.9, ge=0, le=1, description="smallest allowed acc_synthetic / acc_real")
    max_memorized_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="largest allowed share of memorized synthetic images (synthdata.memorization); null: not checked",
    )


class PublishParams(Section):
    """What the ``publish`` stage stages for release: one gated augmented dataset."""

    name: str = Field(
        "synthdata",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="dataset name: release tags are <name>-v<N>",
    )
    generator: str = Field("auto", description="auto (the passing generator with the best acc_synthetic) or a name")


class Params(Section):
    generators: list[str] = Field(default_factory=lambda: ["cgan", "cvae"], min_length=1)
    paths: PathsParams = PathsParams()
    runtime: RuntimeParams = RuntimeParams()
    data: DataParams = DataParams()
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()  # type: ignore[valid-type]
    sample: SampleParams = SampleParams()
    filter: FilterParams = FilterParams()
    evaluate: EvaluateParams = EvaluateParams()
    gate: GateParams = GateParams()
    publish: PublishParams = PublishParams()

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, raw: Any) -> Any:
        train = raw.get("train") if isinstance(raw, dict) else None
        moved = [k for k in ("device", "threads") if isinstance(train, dict) and k in train]
        if moved:
            raise ValueError(
                f"train.{moved[0]} moved to runtime.{moved[0]} (a section of its own: every stage that "
                "runs networks reads it); move the key there"
            )
        paths = raw.get("paths") if isinstance(raw, dict) else None
        if isinstance(paths, dict) and "judge" in paths:
            raise ValueError(
                "paths.judge was renamed paths.filter (the 'filter' stage: one name for classifier-"
                "filtered sampling); rename the key"
            )
        return raw

    @field_validator("generators")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [g for g in v if g not in generators.REGISTRY]
        if unknown:
            raise ValueError(f"unknown generator {unknown[0]!r}; choose from {generators.generator_names()}")
        return v

    @model_validator(mode="after")
    def _publish_listed(self) -> "Params":
        if self.publish.generator != "auto" and self.publish.generator not in self.generators:
            raise ValueError(
                f"publish.generator {self.publish.generator!r} is not in generators {self.generators}; "
                "use 'auto' or one of them"
            )
        if self.sample.mixture and (self.filter.enabled or len(self.train.seeds) < 2):
            raise ValueError(
                "sample.mixture draws from the generators of several train.seeds (at least 2) and without "
                "filter.enabled; set train.seeds or turn sample.mixture off"
            )
        if self.filter.enabled and self.sample.format != "imagefolder":
            raise ValueError(
                "filter.enabled needs sample.format: imagefolder (filtered sampling draws class by class, not by "
                "shard); turn one of them off"
            )
        return self

    def generator_config(self, name: str) -> generators.GeneratorConfig:
        return getattr(self.train, generators.get(name).name)


MAX_FILE_BYTES = 1 << 20  # a params file is a few kB; refuse what cannot be one before parsing it
MAX_VALUES = 100_000  # YAML nodes after alias expansion: bounds "billion laughs" documents


class StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: let PyYAML say so
                continue
            if first != line:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shorten(repr(key), 60)} on lines {first} and {line}; keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in the document once every alias is expanded (an alias shares its anchor's node)."""
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    if size > MAX_VALUES:
        raise yaml.YAMLError(f"its aliases expand to more than {MAX_VALUES} values; write the values out")
    memo[id(node)] = size
    return size


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with :class:`StrictLoader`, bounded in size, nesting and alias expansion."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SynthdataError(f"{path}: {path.stat().st_size} bytes; a parameters file is at most {MAX_FILE_BYTES}")
    loader = StrictLoader(path.read_bytes())
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (first[0] if first else type(exc).__name__)
        raise SynthdataError(f"{path}: not valid YAML{where}: {shorten(problem)}") from None
    except RecursionError:
        raise SynthdataError(f"{path}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _describe(err: dict, file: str) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{file}: unknown key '{shorten(key, 80)}' (check its spelling; docs/parameters.md lists every key)"
    msg = shorten(err["msg"].removeprefix("Value error, "))
    if not err["loc"]:  # a check across sections names its own keys
        return f"{file}: {msg}"
    return f"{file}: {key}: {msg} (got {shorten(repr(err.get('input')), 80)})"


def load_params(path: str | os.PathLike = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate a params file; ``overrides`` maps dotted keys to values (applied first)."""
    path = Path(path)
    if not path.is_file():
        raise SynthdataError(f"{path}: parameters file not found (pass --params PATH)")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise SynthdataError(f"{path}: must be a mapping of sections (data, prepare, train, sample)")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SynthdataError(_describe(errors[0], str(path)) + extra) from None


def resolved(params: Params) -> dict[str, Any]:
    """The parameters as plain data, written beside every output."""
    return params.model_dump(mode="json")
