"""The end-to-end MSM pipeline: spec variants -> documents -> midtrain -> demos -> AFT -> probes -> compare.

Every stage is cached by a content hash of its inputs and settings: its output lives in
`<work_dir>/<stage>/<key>/` and a `stage.json` written last marks it done. A key hashes the stage's
settings, the versions of the templates / prompts that generate data, a fingerprint of the base
model, and the sha256 of the upstream output files (documents, demonstrations), so a re-run does
only what changed -- editing one variant's settings re-runs that variant's branch; editing a
document template regenerates the documents, and training re-runs only if their bytes changed; an
unchanged pipeline re-runs nothing but the (cheap) comparison. Training stages also resume from their own
checkpoints, so an interrupted pipeline continues where it stopped.

Stage graph (per spec variant `v`, with the demonstrations shared by every variant, as in MSM:
different midtraining, the same fine-tuning data):

    docs[v] -> midtrain[v] -> aft[v] (continues midtrain[v]'s adapter) -> export[v] -> eval[v]
    demos --------------------^
    base model ------------------------------------------------------------------> eval[base]
    compare: every eval[v] against eval[base], and each variant against the `baseline` variant
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import append_jsonl, atomic_write_json, atomic_write_text
from msm_eval.train.config import TrainConfig, config_from_dict
from msm_eval.yamlsource import read_yaml_file

PIPELINE_VERSION = 2
_TRAIN_OWNED = ("stage", "model", "data", "out_dir", "init_from")


@dataclass
class PipelineConfig:
    """A pipeline run as configured in YAML (see `configs/cpu_demo.yaml`)."""

    name: str
    base_model: str
    spec: str | None          # None: every arm's documents and the demos come from files (`generator: file`)
    variants: list[str]
    baseline: str | None
    work_dir: Path
    out_dir: Path
    documents: dict[str, Any] = field(default_factory=dict)
    demos: dict[str, Any] = field(default_factory=dict)
    midtrain: dict[str, Any] = field(default_factory=dict)
    aft: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    variant_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<config>"


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML; relative paths are taken from the current directory."""
    source = Path(path)
    raw = read_yaml_file(source, "pipeline config") or {}
    return pipeline_config_from_dict(raw, source=str(source))


def pipeline_config_from_dict(raw: dict[str, Any], *, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping into a `PipelineConfig`, naming the offending field on error."""
    allowed = {"name", "base_model", "spec", "variants", "baseline", "work_dir", "out_dir", "documents", "demos",
               "midtrain", "aft", "eval", "variant_overrides"}
    if not isinstance(raw, dict):
        raise MsmEvalError("a pipeline config must be a mapping", path=source)
    for key in raw:
        if key not in allowed:
            raise MsmEvalError(f"unknown setting '{key}'", path=source, field=key,
                               hint=f"use one of: {', '.join(sorted(allowed))}")
    for key in ("name", "spec", "work_dir", "out_dir"):
        if key == "spec" and raw.get("spec") is None and _all_from_files(raw):
            continue                                      # data files only: no spec needed
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise MsmEvalError(f"missing '{key}'", path=source, field=key, hint="see configs/cpu_demo.yaml"
                               + (" (or read every arm's documents and the demos from files: "
                                  "configs/positive_control.yaml)" if key == "spec" else ""))
    variants = raw.get("variants")
    if not isinstance(variants, list) or not variants or not all(isinstance(v, str) for v in variants):
        raise MsmEvalError("needs a non-empty list of spec variants", path=source, field="variants",
                           hint="e.g. variants: [rules, value_augmented]")
    _check_sections(raw, variants, source)
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in variants:
        raise MsmEvalError(f"baseline '{baseline}' is not one of the variants", path=source, field="baseline",
                           hint=f"use one of: {', '.join(variants)}")
    for stage in ("midtrain", "aft"):
        section = raw.get(stage) or {}
        owned = sorted(set(section) & set(_TRAIN_OWNED))
        if owned:
            raise MsmEvalError(f"'{owned[0]}' is set by the pipeline", path=source, field=f"{stage}.{owned[0]}",
                               hint="remove it from the stage settings")
        # validate the training settings now, not an hour into the run
        config_from_dict({**section, "stage": stage, "data": "x", "out_dir": "x"}, source=f"{source} ({stage})")
    overrides = raw.get("variant_overrides") or {}
    for v in overrides:
        if v not in variants:
            raise MsmEvalError(f"override for unknown variant '{v}'", path=source, field=f"variant_overrides.{v}",
                               hint=f"use one of: {', '.join(variants)}")
    return PipelineConfig(name=raw["name"], base_model=str(raw.get("base_model", "smollm2")), spec=raw.get("spec"),
                          variants=list(variants), baseline=baseline, work_dir=Path(raw["work_dir"]),
                          out_dir=Path(raw["out_dir"]), documents=dict(raw.get("documents") or {}),
                          demos=dict(raw.get("demos") or {}), midtrain=dict(raw.get("midtrain") or {}),
                          aft=dict(raw.get("aft") or {}), eval=dict(raw.get("eval") or {}),
                          variant_overrides=dict(overrides), source=source)


def _stage_options(section: str) -> set[str]:
    """The settings a `documents` / `demos` section may hold: the generator's keyword arguments."""
    import inspect as pyinspect

    if section == "documents":
        from msm_eval.train.docs import _generate_documents as function
        extra = {"generator", "arm"}
    else:
        from msm_eval.train.demos import generate_demos_async as function
        extra = {"generator", "use"}
    params = pyinspect.signature(function).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} | extra | {"path"}


FILE_GENERATOR = "file"
"""`generator: file` in a documents / demos section: use the JSONL at `path` as it is (no spec needed)."""


def _all_from_files(raw: dict[str, Any]) -> bool:
    """Whether every arm's documents and the shared demos are read from files (`generator: file`)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("variants"), list):
        return False
    sections = [raw.get("demos")] + [_merged(raw, v, "documents") for v in raw["variants"]]
    return all(isinstance(sec, dict) and sec.get("generator") == FILE_GENERATOR for sec in sections)


def _merged(raw: dict[str, Any], variant: Any, section: str) -> dict[str, Any] | None:
    """A section's settings for one variant (the section, then the variant's overrides)."""
    base = raw.get(section)
    overrides = raw.get("variant_overrides") or {}
    extra = overrides.get(variant, {}) if isinstance(overrides, dict) and isinstance(variant, str) else {}
    extra = extra.get(section, {}) if isinstance(extra, dict) else {}
    if not isinstance(base, dict) or not isinstance(extra, dict):
        return None
    return {**base, **extra}


def _check_sections(raw: dict[str, Any], variants: list[str], source: str) -> None:
    """Validate the whole config before any stage runs: section types, option names, variant names."""
    import re

    from msm_eval.spec import VARIANTS

    from_files = raw.get("spec") is None and _all_from_files(raw)
    for index, variant in enumerate(variants):
        if from_files:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", variant):
                raise MsmEvalError(f"arm name {variant!r} is not a simple name", path=source,
                                   field=f"variants[{index}]", hint="use letters, digits, '_', '-' or '.'")
            continue
        if variant not in VARIANTS:
            raise MsmEvalError(f"unknown spec variant '{variant}'", path=source, field=f"variants[{index}]",
                               hint=f"use some of: {', '.join(VARIANTS)}")
    for key in ("name", "spec", "work_dir", "out_dir", "base_model", "baseline"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], str):
            raise MsmEvalError(f"must be a string, got {raw[key]!r}", path=source, field=key,
                               hint="see configs/cpu_demo.yaml")
    for section in ("documents", "demos", "midtrain", "aft", "eval", "variant_overrides"):
        value = raw.get(section)
        if value is not None and not isinstance(value, dict):
            raise MsmEvalError(f"must be a mapping of settings, got {value!r}", path=source, field=section,
                               hint=f"write '{section}:' followed by indented 'key: value' lines (see configs/cpu_demo.yaml)")
    for section in ("documents", "demos"):
        allowed = _stage_options(section)
        unknown = sorted(set(raw.get(section) or {}) - allowed - _PIPELINE_OWNED)
        if unknown:
            raise MsmEvalError(f"unknown setting '{unknown[0]}'", path=source, field=f"{section}.{unknown[0]}",
                               hint=f"use some of: {', '.join(sorted(allowed - _PIPELINE_OWNED))}")
    for variant, per_stage in (raw.get("variant_overrides") or {}).items():
        if not isinstance(per_stage, dict) or not all(isinstance(v, dict) for v in per_stage.values()):
            raise MsmEvalError("must map stage names to settings", path=source, field=f"variant_overrides.{variant}",
                               hint="e.g. variant_overrides: {rules: {midtrain: {lr: 1.0e-4}}}")
    checks = [("demos", "demos", raw.get("demos"))] + [
        (f"variant_overrides.{v}.documents" if ((raw.get("variant_overrides") or {}).get(v) or {}).get("documents")
         else "documents", "documents", _merged(raw, v, "documents")) for v in variants]
    for where, section, settings in checks:
        if not isinstance(settings, dict):
            continue
        if settings.get("generator") == FILE_GENERATOR:
            if not isinstance(settings.get("path"), str) or not settings["path"]:
                raise MsmEvalError("generator 'file' needs a 'path' to a JSONL file", path=source,
                                   field=f"{where}.path", hint=f"e.g. path: positive_control/{section}.jsonl")
            extra = sorted(set(settings) - {"generator", "path", "use"})
            if extra:
                raise MsmEvalError(f"setting '{extra[0]}' does nothing with generator 'file'", path=source,
                                   field=f"{where}.{extra[0]}", hint="remove it, or use a generating generator")
        elif "path" in settings:
            raise MsmEvalError("'path' is only read with generator: file", path=source, field=f"{where}.path",
                               hint="set generator: file to train on that file, or remove path")


_PIPELINE_OWNED = {"settings", "variant", "spec", "out_dir", "out_path", "decomposition"}
"""Generator arguments the pipeline sets itself (not allowed in a section)."""


def content_key(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (the cache key of a stage)."""
    text = json.dumps([PIPELINE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def generator_version(kind: str) -> str:
    """Version of the generators a data stage may use: the offline templates and the model prompts.

    Part of the documents / demos cache keys, so editing a template or prompt regenerates the data.
    """
    from msm_eval.train.generation import prompt_version, template_version
    if kind == "docs":
        from msm_eval.train.docs import DOC_PROMPTS as prompts
    else:
        from msm_eval.train.demos import DEMO_PROMPTS as prompts
    return f"{template_version(kind, kind + '-template')}+{prompt_version(prompts, kind)}"


def model_fingerprint(path: Path) -> str:
    """A cheap content fingerprint of a model folder: config.json's bytes plus every file's name and size."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path)}:{item.stat().st_size}".encode())
    return digest.hexdigest()


def output_sha256(outputs: dict[str, Any], name: str) -> str:
    """sha256 of a stage's output file (recorded in stage.json; computed for older cache entries)."""
    from msm_eval.train.data import file_sha256
    return str(outputs.get(f"{name}_sha256") or file_sha256(outputs[name]))


# ----------------------------------------------------------------------------- stage functions

def copy_data_file(settings: dict[str, Any], out_path: Path, kind: str) -> Path:
    """`generator: file`: check the JSONL at `settings['path']` (documents or chats) and copy it to `out_path`."""
    from msm_eval.train.data import load_chats, load_documents
    source = Path(settings["path"])
    if not source.is_file():
        raise MsmEvalError(f"{kind} file not found", path=source, field=f"{kind}.path",
                           hint="fix the path (relative paths are taken from the current directory)")
    (load_documents if kind == "documents" else load_chats)(source)     # errors name the line
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, source.read_text(encoding="utf-8"))
    return out_path


def source_sha256(settings: dict[str, Any]) -> str | None:
    """sha256 of a `generator: file` section's input file (part of its cache key); None otherwise."""
    if settings.get("generator") != FILE_GENERATOR:
        return None
    from msm_eval.train.data import file_sha256
    path = Path(settings["path"])
    if not path.is_file():
        raise MsmEvalError("data file not found", path=path, field="path",
                           hint="fix the path (relative paths are taken from the current directory)")
    return file_sha256(path)


def _file_sha(settings: dict[str, Any]) -> list[str]:
    sha = source_sha256(settings)
    return [sha] if sha else []


def make_documents(spec: Any, variant: str, out_path: Path, settings: dict[str, Any]) -> Path:
    """Decompose the variant (no model) and write its template documents JSONL (or copy `generator: file`'s)."""
    if settings.get("generator") == FILE_GENERATOR:
        return copy_data_file(settings, out_path, "documents")
    from msm_eval.train.decompose import decompose_structural
    from msm_eval.train.docs import generate_documents
    decomposition = decompose_structural(spec, variant)
    options = {k: v for k, v in settings.items() if k not in ("generator", "arm")}
    generate_documents(decomposition, spec, out_path, generator=settings.get("generator", "template"),
                       arm=settings.get("arm") or default_doc_arm(variant), **options)
    return out_path


def default_doc_arm(variant: str) -> str:
    """Document style per spec variant: rule-only variants get `rules` documents, the rest `value` ones."""
    return "rules" if variant in ("rules", "rule_augmented") else "value"


def make_demos(spec: Any, out_dir: Path, settings: dict[str, Any]) -> Path:
    """Write the shared AFT demonstrations (chat JSONL) and return the file (`generator: file`: a checked copy)."""
    if settings.get("generator") == FILE_GENERATOR:
        return copy_data_file(settings, out_dir / "demos.jsonl", "demos")
    from msm_eval.train.demos import generate_demos
    options = {k: v for k, v in settings.items() if k not in ("generator", "use")}
    result = generate_demos(spec, out_dir, generator=settings.get("generator", "template"), **options)
    return _find_chat_file(result, out_dir, settings.get("use", "no_reasoning"))


def _find_chat_file(result: Any, out_dir: Path, use: str) -> Path:
    """The exported chat JSONL to train on: the arm named `use` (e.g. `no_reasoning`, `reasoning`)."""
    paths = getattr(result, "paths", None) or {}
    candidates = [Path(p) for name, p in paths.items() if name == use or str(p).endswith(f"_{use}.jsonl")]
    if not candidates:
        raise MsmEvalError(f"demonstrations have no '{use}' arm (got: {', '.join(paths) or 'none'})",
                           path=out_dir, field="demos.use", hint="set demos.use to one of the exported arms")
    for path in candidates:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        if first.strip() and "messages" in json.loads(first):
            return path
    raise MsmEvalError("demonstration generation wrote no chat JSONL", path=out_dir,
                       hint="check the demos settings in the pipeline config")


def run_probe_eval(model_dir: Path, log_dir: Path, settings: dict[str, Any], label: str) -> Path:
    """Run the `spec_probe` task on a Hugging Face folder; return the .eval log path."""
    from inspect_ai import eval as inspect_eval

    from msm_eval.probes import spec_probe
    task_args = {k: v for k, v in settings.items() if k in ("items", "presentation", "kinds", "batch_size", "dtype")}
    logs = inspect_eval(spec_probe(model_path=str(model_dir), **task_args), model=f"hf/{model_dir}",
                        model_args={"do_sample": False}, log_dir=str(log_dir), display="none",
                        tags=[label], metadata={"arm": label}, limit=settings.get("limit"))
    log = logs[0]
    if log.status != "success":
        raise MsmEvalError(f"spec_probe eval of '{label}' ended with status {log.status}", path=log.location,
                           hint="open the log with `inspect view` to see the error")
    return Path(log.location)


@dataclass
class StageFunctions:
    """The work each stage does; tests substitute cheap fakes."""

    documents: Callable[[Any, str, Path, dict[str, Any]], Path] = make_documents
    demos: Callable[[Any, Path, dict[str, Any]], Path] = make_demos
    evaluate: Callable[[Path, Path, dict[str, Any], str], Path] = run_probe_eval
    compare: Callable[[dict[str, str], "PipelineConfig", list["StageRecord"]], dict[str, Any]] = \
        lambda evals, cfg, records: compare_arms(evals, cfg, records)
    load_spec: Callable[[str], Any] = lambda ref: _load_spec(ref)


def _load_spec(ref: str) -> Any:
    from msm_eval.spec import load_spec
    return load_spec(ref)


# ----------------------------------------------------------------------------- the runner

@dataclass
class StageRecord:
    """One stage of one pipeline run: ran or served from cache."""

    stage: str
    arm: str
    key: str
    status: str
    seconds: float
    output: str


class Pipeline:
    """Runs the stage graph with content-hash caching (see the module docstring)."""

    def __init__(self, config: PipelineConfig, functions: StageFunctions | None = None,
                 progress: Callable[[str], None] | None = print) -> None:
        """`progress` gets one line when each stage starts (or is found cached) and one when it ends."""
        self.cfg = config
        self.fn = functions or StageFunctions()
        self.say = progress or (lambda _msg: None)
        self.records: list[StageRecord] = []

    # one cached stage: run `work(dir)` unless `<dir>/stage.json` says it is done
    def _stage(self, stage: str, arm: str, key: str, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        folder = self.cfg.work_dir / stage / key[:16]
        marker = folder / "stage.json"
        if marker.exists():
            done = json.loads(marker.read_text(encoding="utf-8"))
            self.records.append(StageRecord(stage, arm, key, "cached", 0.0, str(folder)))
            self.say(f"[cached] {stage:<9} {arm}")
            return _from_portable(done["outputs"], folder)
        self.say(f"[run]    {stage:<9} {arm} -> {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        outputs = work(folder)
        seconds = time.perf_counter() - t0
        atomic_write_json(marker, {"stage": stage, "arm": arm, "key": key, "outputs": _to_portable(outputs, folder),
                                   "seconds": round(seconds, 2),
                                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.records.append(StageRecord(stage, arm, key, "ran", seconds, str(folder)))
        self.say(f"[done]   {stage:<9} {arm} ({seconds:.1f} s)")
        return outputs

    def _train_cfg(self, stage: str, arm: str, data: str, out_dir: Path, init_from: str | None,
                   spec_sha: str | None) -> TrainConfig:
        settings = {**getattr(self.cfg, stage), **self.cfg.variant_overrides.get(arm, {}).get(stage, {})}
        settings = {**settings, "stage": stage, "data": data, "out_dir": str(out_dir), "init_from": init_from}
        if init_from is None:
            settings["model"] = self.cfg.base_model
        settings.setdefault("spec_sha256", spec_sha)
        return config_from_dict(settings, source=f"{self.cfg.source} ({stage}, {arm})")

    def run(self) -> dict[str, Any]:
        """Run every stage that is not cached; write the comparison to `out_dir`; return a summary."""
        from msm_eval.train.export import export_run
        from msm_eval.train.trainer import resolve_model_path, train

        cfg = self.cfg
        spec = self.fn.load_spec(cfg.spec) if cfg.spec else None
        available = getattr(spec, "variants", None)
        for index, variant in enumerate(cfg.variants):
            if available is not None and variant not in available:   # before any stage runs
                raise MsmEvalError(f"spec '{cfg.spec}' has no variant '{variant}'", path=cfg.source,
                                   field=f"variants[{index}]", hint=f"this spec offers: {', '.join(available)}")
        base_path = resolve_model_path(cfg.base_model)
        model_key = cfg.base_model if cfg.base_model == "smollm2" else model_fingerprint(base_path)
        eval_settings = dict(cfg.eval)
        # only what changes the scores is part of an eval's cache key (not batch size or compare settings)
        eval_identity = {k: eval_settings.get(k) for k in ("items", "presentation", "kinds", "dtype", "limit")}
        from msm_eval.probes import load_probe_items, probe_set_hash
        probes_hash = probe_set_hash(load_probe_items(eval_settings.get("items")))

        def overrides(arm: str, section: str) -> dict[str, Any]:
            return {**getattr(cfg, section), **cfg.variant_overrides.get(arm, {}).get(section, {})}

        # keys hash what a stage reads: settings, generator versions and the bytes of upstream outputs,
        # so regenerating identical data leaves the training stages cached
        # a `generator: file` input's bytes join the key (nothing is added for generated data)
        demo_key = content_key("demos", spec.sha256 if spec else None, cfg.demos, generator_version("demos"),
                               *_file_sha(cfg.demos))
        demos = self._stage("demos", "shared", demo_key, lambda d: _with_sha({
            "chats": str(self.fn.demos(spec, d, cfg.demos))}, "chats"))
        demos_sha = output_sha256(demos, "chats")

        evals: dict[str, str] = {}
        base_eval_key = content_key("eval", model_key, eval_identity, probes_hash)
        evals["base"] = self._stage("eval", "base", base_eval_key, lambda d: {
            "log": str(self.fn.evaluate(base_path, d / "logs", eval_settings, "base"))})["log"]

        for arm in cfg.variants:
            doc_settings = overrides(arm, "documents")
            spec_sha = spec.variant_sha256(arm) if spec else None
            docs_key = content_key("documents", spec_sha, arm, doc_settings, generator_version("docs"),
                                   *_file_sha(doc_settings))
            docs = self._stage("documents", arm, docs_key, lambda d, a=arm, s=doc_settings: _with_sha({
                "documents": str(self.fn.documents(spec, a, d / "documents.jsonl", s))}, "documents"))

            mid_settings = overrides(arm, "midtrain")
            mid_key = content_key("midtrain", output_sha256(docs, "documents"), model_key, mid_settings)
            mid = self._stage("midtrain", arm, mid_key, lambda d, a=arm: self._train(
                train, self._train_cfg("midtrain", a, docs["documents"], d / "run", None, spec_sha)))

            aft_settings = overrides(arm, "aft")
            aft_key = content_key("aft", mid_key, demos_sha, aft_settings)
            aft = self._stage("aft", arm, aft_key, lambda d, a=arm, m=mid: self._train(
                train, self._train_cfg("aft", a, demos["chats"], d / "run", m["run"], spec_sha)))

            export_key = content_key("export", aft_key)
            exported = self._stage("export", arm, export_key, lambda d, r=aft, a=arm: {
                "model": str(export_run(r["run"], d / "model", extra={"arm": a, "pipeline": cfg.name}))})

            eval_key = content_key("eval", export_key, eval_identity, probes_hash)
            evals[arm] = self._stage("eval", arm, eval_key, lambda d, e=exported, a=arm: {
                "log": str(self.fn.evaluate(Path(e["model"]), d / "logs", eval_settings, a))})["log"]

            if eval_settings.get("after_midtrain"):
                mexp_key = content_key("export", mid_key)
                mexp = self._stage("export", f"{arm}:msm_only", mexp_key, lambda d, r=mid, a=arm: {
                    "model": str(export_run(r["run"], d / "model", extra={"arm": f"{a}:msm_only"}))})
                mev_key = content_key("eval", mexp_key, eval_identity, probes_hash)
                evals[f"{arm}:msm_only"] = self._stage("eval", f"{arm}:msm_only", mev_key,
                                                       lambda d, e=mexp, a=arm: {"log": str(self.fn.evaluate(
                                                           Path(e["model"]), d / "logs", eval_settings,
                                                           f"{a}:msm_only"))})["log"]

        summary = self._compare(evals)
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        append_jsonl(cfg.work_dir / "pipeline_runs.jsonl", [{
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "stages": [r.__dict__ for r in self.records]}])
        return summary

    def _train(self, train_fn: Callable[..., Any], tcfg: TrainConfig) -> dict[str, Any]:
        result = train_fn(tcfg)
        return {"run": str(result.out_dir), "steps": result.steps, "tokens": result.tokens,
                "train_loss": result.train_loss, "eval_loss": result.eval_loss}

    def _compare(self, evals: dict[str, str]) -> dict[str, Any]:
        """Every eval log -> tidy frame -> summaries and paired comparisons -> tables in `out_dir`."""
        return self.fn.compare(evals, self.cfg, self.records)


_STAGE_DIR = "$STAGE"
"""Stands for a stage's own folder in `stage.json`, so a work_dir can be moved or copied."""


def _to_portable(value: Any, folder: Path) -> Any:
    """`value` with every path string inside `folder` written relative to it (`$STAGE/...`)."""
    if isinstance(value, dict):
        return {k: _to_portable(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_portable(v, folder) for v in value]
    if isinstance(value, str):
        for root in dict.fromkeys((str(folder), str(folder.resolve()))):
            if value == root:
                return _STAGE_DIR
            if value.startswith(root + os.sep):
                return _STAGE_DIR + "/" + value[len(root) + 1:].replace(os.sep, "/")
    return value


def _from_portable(value: Any, folder: Path) -> Any:
    """Inverse of `_to_portable` for the folder the stage is in now."""
    if isinstance(value, dict):
        return {k: _from_portable(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_portable(v, folder) for v in value]
    if value == _STAGE_DIR:
        return str(folder)
    if isinstance(value, str) and value.startswith(_STAGE_DIR + "/"):
        return str(folder / value[len(_STAGE_DIR) + 1:])
    return value


def _with_sha(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    """Add `<name>_sha256` (the output file's hash) to a stage's outputs."""
    from msm_eval.train.data import file_sha256
    return {**outputs, f"{name}_sha256": file_sha256(outputs[name])}


def tidy_probe_frame(evals: dict[str, str]) -> Any:
    """One tidy frame (msm_eval.results) over all arms' logs, with an `arm` column naming each."""
    import pandas as pd

    from msm_eval.results import load
    frames = []
    for arm, log in evals.items():
        frame = load([log])
        frame["arm"] = arm
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def compare_arms(evals: dict[str, str], cfg: PipelineConfig, records: list[StageRecord]) -> dict[str, Any]:
    """Summaries per arm (overall and per probe kind) and paired comparisons; writes table.md,
    comparisons.csv and summary.json (the same bytes whenever the results are the same: committed)
    and run.json (which stages ran or came from the cache, and their seconds: git-ignored).
    Returns the summary with its `stages`."""
    from msm_eval import stats

    df = tidy_probe_frame(evals)
    df = df[df["dimension"] == "p_aligned"].copy()
    kinds = _sample_kinds(evals)
    df["kind"] = df["sample_id"].map(kinds)
    pairs: list[tuple[str, str]] = [("base", arm) for arm in evals if arm != "base"]
    if cfg.baseline:
        pairs += [(cfg.baseline, arm) for arm in cfg.variants if arm != cfg.baseline]
    seed = int(cfg.eval.get("seed", 0))
    n_resamples = int(cfg.eval.get("n_resamples", 10_000))
    summary_rows, compare_rows = [], []
    for kind_name, part in [("all", df)] + [(k, df[df["kind"] == k]) for k in sorted(set(kinds.values()))]:
        if part.empty:
            continue
        s = stats.summarize(part, by="arm", n_resamples=n_resamples, seed=seed)
        for row in s.to_dict("records"):
            summary_rows.append({"kind": kind_name, **row})
        for baseline, candidate in pairs:
            c = stats.compare(part, baseline, candidate, by="arm", n_resamples=n_resamples, seed=seed)
            for row in c.to_dict("records"):
                compare_rows.append({"kind": kind_name, "baseline": baseline, "candidate": candidate, **row})
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"pipeline": cfg.name, "spec": cfg.spec, "base_model": cfg.base_model, "variants": cfg.variants,
               "baseline": cfg.baseline, "arms": list(evals), "summary": summary_rows,
               "comparisons": compare_rows}
    stages = [{"stage": r.stage, "arm": r.arm, "status": r.status, "seconds": round(r.seconds, 1)} for r in records]
    atomic_write_json(cfg.out_dir / "summary.json", summary)
    atomic_write_text(cfg.out_dir / "table.md", render_table(summary))
    import pandas as pd
    atomic_write_text(cfg.out_dir / "comparisons.csv", pd.DataFrame(compare_rows).to_csv(index=False))
    atomic_write_json(cfg.out_dir / "run.json", {"pipeline": cfg.name, "stages": stages})
    return {**summary, "stages": stages}


def _sample_kinds(evals: dict[str, str]) -> dict[str, str]:
    from inspect_ai.log import read_eval_log
    kinds: dict[str, str] = {}
    for log in evals.values():
        for sample in read_eval_log(log).samples or []:
            kinds[str(sample.id)] = str(sample.metadata.get("kind"))
        if kinds:
            break
    return kinds


def _fmt(value: Any, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def render_table(summary: dict[str, Any]) -> str:
    """The committed Markdown comparison table of a pipeline run."""
    lines = [f"# {summary['pipeline']}: spec_probe P(aligned) by arm", "",
             (f"Spec `{summary['spec']}`" if summary.get("spec") else "Training data from files (no spec)")
             + f", base model `{summary['base_model']}`, variants "
             + ", ".join(f"`{v}`" for v in summary["variants"]) + ". `base` = the model before any training;",
             "each variant = midtraining on its documents, then AFT on the shared demonstrations.", "",
             "| kind | arm | items | mean P(aligned) | 95% CI |", "|---|---|---|---|---|"]
    for row in summary["summary"]:
        lines.append(f"| {row['kind']} | {row.get('arm')} | {row.get('n')} | {_fmt(row.get('mean'))} | "
                     f"[{_fmt(row.get('ci_low'))}, {_fmt(row.get('ci_high'))}] |")
    lines += ["", "Paired differences (candidate - baseline on the same items; cluster bootstrap CI; sign-flip "
              "permutation p, Holm-adjusted across dimensions, of which there is one here):", "",
              "| kind | baseline | candidate | delta | 95% CI | p | p (adj.) | pairs |", "|---|---|---|---|---|---|---|---|"]
    for row in summary["comparisons"]:
        lines.append(f"| {row['kind']} | {row['baseline']} | {row['candidate']} | {_fmt(row.get('delta'), 4)} | "
                     f"[{_fmt(row.get('ci_low'), 4)}, {_fmt(row.get('ci_high'), 4)}] | {_fmt(row.get('p_value'))} | "
                     f"{_fmt(row.get('p_adj'))} | {row.get('n_pairs')} |")
    lines += ["", "Which stages ran this time, and for how long: `run.json` beside this file (not committed).", ""]
    return "\n".join(lines)
