"""The commands: synth, import, config, run, demo, evaluate, export, view."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from syngraph.cli import (
    Overwrite,
    Scheduler,
    WorkDir,
    Workers,
    absolute_path,
    app,
    config_app,
    console,
)
from syngraph.engine import Compute
from syngraph.synth.params import DEMO_SEED


def compute_for(workdir: Path | None, scheduler: str | None, workers: int | None) -> Compute:
    """The project's [compute] settings, overridden by command-line options."""
    from syngraph.config import CONFIG_NAME, SlurmParams, load_config, project_path

    sched, n, mem, slurm = "local", 0, "auto", SlurmParams()
    if workdir is not None and (workdir / CONFIG_NAME).exists():
        c = load_config(workdir).compute
        sched, n, mem, slurm = c.scheduler, c.workers, c.memory_limit, c.slurm
        if slurm.log_directory:
            slurm = slurm.model_copy(update={"log_directory": str(project_path(workdir, slurm.log_directory))})
    return Compute(scheduler=scheduler or sched, workers=workers if workers is not None else (n or None),
                   memory_limit=mem, slurm=slurm)


# the older positional form of the working directory, still accepted, no longer shown
WdPositional = Annotated[Path | None, typer.Argument(hidden=True, show_default=False, metavar="WD")]


def workdir_of(positional: Path | None, option: Path, default: Path = Path(".")) -> Path:
    """The working directory from ``--wd``, or from the older positional form."""
    from syngraph.errors import InputError

    if positional is not None:
        positional = absolute_path(positional)
    if positional is not None and option != absolute_path(default) and positional != option:
        raise InputError(f"working directory given twice ({positional} and --wd {option}); pass --wd only")
    return positional if positional is not None else option


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="working directory to create")],
    shape: Annotated[tuple[int, int, int], typer.Option(help="X Y Z voxels")] = (256, 256, 128),
    seed: Annotated[int, typer.Option(help="random seed (same seed, same bytes)")] = DEMO_SEED,
    voxel_size_nm: Annotated[tuple[float, float, float] | None, typer.Option(help="X Y Z nm (default 10 10 25, or the preset's)")] = None,
    big_ids: Annotated[bool, typer.Option("--big-ids", help="ids above 2**63 (tests 64-bit id handling)")] = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    preset: Annotated[str, typer.Option(help="tissue variant: default, mouse-sstem, fly-fib, no-astrocytes, ... (docs/synth.md)")] = "default",
) -> None:
    """Write demo tissue with full ground truth: volumes, config, graph and gt/ tables."""
    from syngraph.synth import synthesize
    from syngraph.synth.presets import get_preset

    tissue = get_preset(preset)
    report = synthesize(out, shape_xyz=shape, seed=seed, voxel_size_nm=voxel_size_nm or tissue.voxel_size_nm,
                        big_ids=big_ids, compute=compute_for(None, scheduler, workers), overwrite=overwrite,
                        params=tissue.params(), organelle_maps=tissue.organelle_maps)
    console.print(f"[green]wrote[/] {out}: {report}")


@app.command("import")
def import_(
    layer: Annotated[str, typer.Argument(help="layer name: sv, mi, vc, sj, syn_type, myelin, ...")],
    source: Annotated[str, typer.Argument(help="zarr, n5, precomputed://, .h5, .tif (file or folder), .npy")],
    wd: WorkDir = Path("."),
    kind: Annotated[str, typer.Option(help="labels, probability or mask")] = "labels",
    voxel_size_nm: Annotated[tuple[float, float, float] | None, typer.Option(help="X Y Z nm, if the source has none")] = None,
    axes: Annotated[str | None, typer.Option(help='axis order of the source: "xyz", "zyx", "czyx"...; required where its metadata names none (.npy, plain h5/zarr)')] = None,
    dataset: Annotated[str | None, typer.Option(help="dataset/array key inside an h5, zarr or n5 container")] = None,
    block_size_vx: Annotated[tuple[int, int, int] | None, typer.Option(help="X Y Z copy block")] = None,
    chunks_xyz: Annotated[tuple[int, int, int] | None, typer.Option(help="X Y Z chunk shape on disk")] = None,
    scheduler: Scheduler = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
) -> None:
    """Copy a volume blockwise into the working store (never loading it whole)."""
    from syngraph.io.importers import import_layer

    lay = import_layer(wd, layer, source, kind=kind, voxel_size_nm=voxel_size_nm, axes=axes,
                       dataset=dataset, block_size_vx=block_size_vx, chunks_xyz=chunks_xyz,
                       compute=compute_for(wd, scheduler, workers), overwrite=overwrite)
    console.print(f"[green]imported[/] {lay}")


def imported_layers(wd: Path, sv: object) -> dict:
    """``[layers]`` for a new config: sv, plus every layer already imported into ``wd`` (the
    import adds later ones itself)."""
    from syngraph.config import LayerSource
    from syngraph.io.volume import list_layers, open_layer

    out = {"sv": sv}
    for name in list_layers(wd):
        if name != "sv" and (wd / "steps" / f"import_{name}").is_dir():
            out[name] = LayerSource(path=name, kind=open_layer(wd, name).info.kind)
    return out


@config_app.command("init")
def config_init(
    wd: WorkDir = Path("."),
    voxel_size_nm: Annotated[tuple[float, float, float], typer.Option(help="X Y Z nm")] = (10.0, 10.0, 25.0),
    force: Annotated[bool, typer.Option("--force", help="replace an existing syngraph.toml")] = False,
) -> None:
    """Write a commented default syngraph.toml."""
    from syngraph.config import CONFIG_NAME, default_config, write_config

    if (wd / CONFIG_NAME).exists() and not force:
        console.print(f"[red]error:[/] {wd / CONFIG_NAME} exists; pass --force to replace it")
        raise typer.Exit(2)
    cfg = default_config(voxel_size_nm)
    cfg.layers = imported_layers(wd, cfg.layers["sv"])  # labels only until organelles are imported
    path = write_config(wd, cfg)
    console.print(f"[green]wrote[/] {path}")


@config_app.command("check")
def config_check(wd: WorkDir = Path(".")) -> None:
    """Check what a run would: syngraph.toml, parameter ranges, layers, files, scheduler."""
    from syngraph.checks import check_project
    from syngraph.config import dump_config

    cfg = check_project(wd)
    typer.echo(dump_config(cfg))
    show_plan(wd, [], cfg)
    console.print("[green]config is valid[/]")


@config_app.command("docs")
def config_docs() -> None:
    """Print the config reference (docs/config.md) generated from the defaults."""
    from syngraph.config import config_markdown

    typer.echo(config_markdown(), nl=False)


def _run_help() -> str:
    """``run --help``: the command, then every step in order with what it makes."""
    from syngraph.pipeline import STEPS

    steps = "\n".join(f"  {s.name:<11} {s.help}" for s in STEPS)
    return ("Run one pipeline step (resumes where a killed run stopped), or all of them in order; "
            "'all' ends by writing report.html.\n\n\b\nSteps, in order:\n" + steps)


def show_plan(wd: Path, names: list[str], cfg: object, quiet: bool = False) -> None:
    """Print what a run will do with the layers it has (check_project refused missing ones)."""
    from syngraph.pipeline import plan_run

    plan = plan_run(wd, names, cfg)
    if not quiet:
        console.print("plan:", highlight=False)
        for line in plan.lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command(help=_run_help())
def run(
    step: Annotated[str, typer.Argument(help="a step name (listed above), or 'all'")],
    wd: WorkDir = Path("."),
    scheduler: Scheduler = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    contacts_only: Annotated[bool, typer.Option("--contacts-only", help="synapses: contact sites alone (no sj map needed)")] = False,
    drop_unknown: Annotated[bool, typer.Option("--drop-unknown", help="rag: drop edges naming supervoxels absent from the volume")] = False,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="astrocytes, celltypes, synapses: use the model even outside its training domain")] = False,
) -> None:
    """Run one pipeline step (resumes where a killed run stopped), or all of them."""
    from syngraph.checks import check_project
    from syngraph.engine import session
    from syngraph.pipeline import get_step, run_step, step_names

    names = step_names() if step == "all" else [get_step(step).name]
    compute = compute_for(wd, scheduler, workers)
    cfg = check_project(wd, compute.scheduler)  # fail early, naming every bad key, layer and file
    show_plan(wd, names, cfg, quiet=step != "all")  # every missing input, before any work
    notes: list[str] = []
    with session(compute):
        for name in names:
            extra = {"contacts_only": True} if contacts_only and name == "synapses" else {}
            if drop_unknown and name == "rag":
                extra["drop_unknown"] = True
            if trust_model and name in ("astrocytes", "celltypes", "synapses"):
                extra["trust_model"] = True
            with _one_line_warnings():
                info = run_step(wd, name, overwrite=overwrite, **extra)
            console.print(f"[green]{name}[/] done in {info['seconds']:.1f} s", highlight=False)
            _print_step_summary(info, notes)
    if notes:
        console.print(f"[yellow]{len(notes)} warning(s):[/]", highlight=False)
        for n in notes:
            console.print(f"  {n}", highlight=False, markup=False, soft_wrap=True)
    if step == "all":
        from syngraph.report import write_report

        console.print(f"[green]wrote[/] {write_report(wd)}")


@app.command("plan")
def plan_cmd(
    step: Annotated[str, typer.Argument(help="a step name, or 'all'")] = "all",
    wd: WorkDir = Path("."),
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Before a run: each step's block size, expected time and peak memory for this volume on this
    machine, from the per-voxel costs bench/pipeline.py measured (src/syngraph/engine/costs.json)."""
    import os

    import psutil

    from syngraph.engine.run import clock
    from syngraph.pipeline import estimate_run, get_step, step_names

    compute = compute_for(wd, scheduler, workers)
    n = 1 if compute.scheduler == "serial" else compute.n_workers
    rows, info = estimate_run(wd, step_names() if step == "all" else [get_step(step).name], n)
    mem_gib = psutil.virtual_memory().total / 2**30
    x, y, z = info["shape_xyz"]
    typer.echo(f"plan for {wd}: {x} x {y} x {z} voxels ({info['mvx']:.1f} MVx), {n} worker(s) "
               f"(scheduler {compute.scheduler}), {os.cpu_count()} cores, {mem_gib:.1f} GiB memory")
    typer.echo(f"costs measured {info.get('date', '?')} on {info.get('machine', '?')}, scheduler "
               f"{info.get('scheduler', '?')}, from {', '.join(info.get('datasets', [])) or '?'}")
    typer.echo(f"{'step':<13}{'block (x y z)':>16}{'blocks':>8}{'cpu_s':>9}{'wall':>9}{'peak_MB':>9}")
    for name, block, count, est in rows:
        where = " ".join(map(str, block)) if block else "per cell/table"
        cost = (f"{est.cpu_s:>9.0f}{clock(est.wall_s):>9}{est.peak_mb:>9.0f}" if est
                else f"{'no measured cost':>27}")
        typer.echo(f"{name:<13}{where:>16}{count or '':>8}{cost}")
    ests = [e for *_, e in rows if e]
    total_wall = sum(e.wall_s for e in ests)
    peak = max((e.peak_mb for e in ests), default=0.0)
    typer.echo(f"{'total':<13}{'':>24}{sum(e.cpu_s for e in ests):>9.0f}{clock(total_wall):>9}{peak:>9.0f}")
    if peak > psutil.virtual_memory().total / 2**20:
        console.print(f"[yellow]warning:[/] the peak ({peak:.0f} MB) exceeds this machine's memory; "
                      f"lower [compute] block_size_vx or use fewer workers", highlight=False)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings from a step as one line each (``warning: message``), not file and source line."""
    import warnings

    old = warnings.formatwarning
    warnings.formatwarning = lambda message, *a, **k: f"warning: {message}\n"  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.formatwarning = old


def _print_step_summary(info: dict, notes: list[str]) -> None:
    """The step's ``summary`` (what it kept and removed) and its ``warnings`` (collected in ``notes``)."""
    result = info.get("result") or {}
    if result.get("summary"):
        console.print(f"  {result['summary']}", highlight=False, markup=False, soft_wrap=True)
    notes.extend(result.get("warnings") or [])


@app.command()
def evaluate(
    wd_arg: WdPositional = None,
    wd: WorkDir = Path("."),
) -> None:
    """Score every step that ran against the demo ground truth (gt/); print and write evaluation.json."""
    from syngraph.evaluate import evaluate as run_eval
    from syngraph.evaluate import print_table

    wd = workdir_of(wd_arg, wd)
    print_table(run_eval(wd))
    console.print(f"wrote {wd / 'evaluation.json'}")


@app.command()
def demo(
    out_arg: WdPositional = None,
    out: Annotated[Path, typer.Option("--wd", "-w", help="where to write the demo project (replaced)")] = Path("demo"),
    shape: Annotated[tuple[int, int, int], typer.Option(help="X Y Z voxels")] = (256, 256, 128),
    seed: Annotated[int, typer.Option(help="tissue seed (the default was never used in development)")] = DEMO_SEED,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Synthesize demo tissue, run every step, and print the accuracy against ground truth; exits 1
    naming the targets that were missed."""
    from syngraph.engine import session
    from syngraph.evaluate import evaluate as run_eval
    from syngraph.evaluate import print_table
    from syngraph.pipeline import run_step, step_names
    from syngraph.synth import synthesize

    out = workdir_of(out_arg, out, default=Path("demo"))
    compute = compute_for(None, scheduler, workers)
    with session(compute):
        console.rule(f"[bold]synth {shape[0]}x{shape[1]}x{shape[2]} seed {seed}")
        synthesize(out, shape_xyz=shape, seed=seed, overwrite=True)
        for name in step_names():
            console.rule(f"[bold]{name}")
            with _one_line_warnings():
                info = run_step(out, name, overwrite=True)
            console.print(f"{name}: {info['seconds']:.1f} s")
    console.rule("[bold]accuracy against ground truth")
    results = run_eval(out)
    print_table(results)
    from syngraph.report import write_report

    console.print(f"report: {write_report(out).resolve()}")
    console.print(f"project: {out.resolve()}")
    missed = failed_targets(results)
    if missed:
        console.print(f"[red]{len(missed)} targets missed:[/] {', '.join(missed)}")
        raise typer.Exit(1)
    console.print("[green]every target met[/]")


def failed_targets(results: dict) -> list[str]:
    """``step.metric = value (target cmp goal)`` for every target an evaluation missed."""
    out = []
    for step, res in results.items():
        for name, goal in res["targets"].items():
            if goal["pass"] is False:
                value = res["metrics"][name]
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                out.append(f"{step}.{name} = {shown} (target {goal['cmp']} {goal['target']:g})")
    return out


train_app = typer.Typer(help="Fit the learned models on labelled data.", no_args_is_help=True)
export_app = typer.Typer(help="Write results in the formats other tools read.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")


@train_app.command("astrocytes")
def train_astrocytes_cmd(
    labels: Annotated[Path, typer.Option(help="table with sv_id and is_astrocyte (or type)")],
    wd: WorkDir = Path("."),
    out: Annotated[Path | None, typer.Option(help="model path (default <wd>/models/astrocyte.npz)")] = None,
    learner: Annotated[str, typer.Option(
        help="adapt (the --base model adapted to the labels), boosted (gradient-boosted trees), "
             "logistic, or auto: boosted with >= 50 labelled supervoxels of each class and no --base, else adapt")] = "auto",
    base: Annotated[Path | None, typer.Option(
        help="two-stage model that --learner adapt (or auto) adapts (default: the shipped model)")] = None,
) -> None:
    """Fit the astrocyte classifier on labelled supervoxels; prints cross-validated accuracy."""
    from syngraph.steps.astrocytes import train_astrocytes

    path, acc = train_astrocytes(wd, labels, out=out, learner=learner, base=base)
    console.print(f"[green]wrote[/] {path}; cross-validated accuracy {acc:.3f}")


@train_app.command("synapses")
def train_synapses_cmd(
    labels: Annotated[Path, typer.Option(help="points x_nm, y_nm, z_nm, label (csv or parquet)")],
    wd: WorkDir = Path("."),
    out: Annotated[Path | None, typer.Option(help="model path (default <wd>/models/synapse_forest.npz)")] = None,
) -> None:
    """Fit the synapse classifier from labelled points; prints cross-validated accuracy."""
    from syngraph.models.synapse import train_synapses

    path, acc = train_synapses(wd, labels, out=out)
    console.print(f"[green]wrote[/] {path}; cross-validated accuracy {acc:.3f}; set it with "
                  f"then set [synapses] model = "<path>" in syngraph.toml")


@train_app.command("compartments")
def train_compartments_cmd(
    labels: Annotated[Path, typer.Option(help="points x_nm, y_nm, z_nm, label (compartment names; csv or parquet)")],
    wd: WorkDir = Path("."),
    out: Annotated[Path | None, typer.Option(help="model path (default <wd>/models/compartments.npz)")] = None,
) -> None:
    """Fit the compartment classifier from labelled points (e.g. Neuroglancer clicks)."""
    from syngraph.steps.compartments.train import train_compartments

    path, scores = train_compartments(wd, labels, out=out)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "n_nodes") or "not enough cells to cross-validate"
    console.print(f"[green]wrote[/] {path}; cross-validated (2 folds over cells): {shown}; use it with "
                  f'[compartments] model = "{path}" in syngraph.toml')


@train_app.command("celltypes")
def train_celltypes_cmd(
    labels: Annotated[Path, typer.Option(help="table with type and cell_id (or x_nm, y_nm, z_nm: a point in the cell)")],
    wd: WorkDir = Path("."),
    out: Annotated[Path | None, typer.Option(help="model path (default <wd>/models/celltypes.npz)")] = None,
    pieces: Annotated[int | None, typer.Option(
        help="random connected pieces of each labelled cell added to the training set (default: docs/celltypes.md)",
        show_default=False)] = None,
) -> None:
    """Fit the cell-type classifier on labelled cells; prints cross-validated accuracy."""
    from rich.markup import escape

    from syngraph.steps.celltypes import train_celltypes

    path, acc = train_celltypes(wd, labels, out=out, pieces=pieces)
    console.print(f"[green]wrote[/] {escape(str(path))}; cross-validated accuracy {acc:.3f}; use it with "
                  + escape(f'[celltypes] model = "{path}"') + " in syngraph.toml")


@train_app.command("embeddings")
def train_embeddings_cmd(
    wd: WorkDir = Path("."),
    more: Annotated[list[Path] | None, typer.Option("--also", help="more working directories to train on")] = None,
    out: Annotated[Path | None, typer.Option(help="weights path (default <wd>/models/embeddings.safetensors)")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps (batches of 256 nodes)")] = 1500,
    labels: Annotated[Path | None, typer.Option(help="cell types of --wd for the reference bank (table with type and cell_id or x_nm, y_nm, z_nm); default: each working directory's typed celltypes run")] = None,
    cell_steps: Annotated[int | None, typer.Option(
        help="optimizer steps of the cell encoder (batches of 128 cells; default: docs/celltypes.md)",
        show_default=False)] = None,
) -> None:
    """Fit the node encoder without labels (contrastive; needs PyTorch) on every skeleton node, the
    cell encoder without labels on random pieces of every cell (needs `syngraph run celltypes`'s
    inputs), and store the labelled cells' vectors as the reference bank the cell kNN votes against."""
    from rich.markup import escape

    from syngraph.steps.celltypes import read_labels
    from syngraph.steps.embeddings import train_embeddings

    dirs = [wd, *(more or [])]
    lab = [read_labels(labels, wd) if labels else None] + [None] * len(more or [])
    path, losses, bank = train_embeddings(dirs, out or wd / "models" / "embeddings.safetensors", steps, lab,
                                         **({} if cell_steps is None else {"cell_steps": cell_steps}))
    console.print(f"[green]wrote[/] {escape(str(path))}; final loss "
                  + ", ".join(f"{v} {x:.3f}" for v, x in losses.items()) + f"; reference bank {bank} labelled cells"
                  + ("" if bank else " (none: pass --labels or run celltypes first)") + "; use it with "
                  + escape(f'[embeddings] model = "{path}"') + " in syngraph.toml")


@app.command()
def edit(
    wd_arg: WdPositional = None,
    wd: WorkDir = Path("."),
    merge: Annotated[list[str] | None, typer.Option(help='"A B": join the cells of supervoxels A and B')] = None,
    split: Annotated[list[str] | None, typer.Option(help='"A B": separate supervoxels A and B (min cut)')] = None,
    table: Annotated[Path | None, typer.Option(help="table of edits: op, sv_a, sv_b")] = None,
) -> None:
    """Merge or split cells by supervoxel ids; recomputes only the cells the edits touch."""
    from syngraph.errors import InputError
    from syngraph.steps.edit import edit_cells

    wd = workdir_of(wd_arg, wd)

    def pairs(values: list[str] | None) -> list[tuple[int, int]]:
        out = []
        for v in values or []:
            parts = v.replace(",", " ").split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise InputError(f"--merge/--split take two supervoxel ids like \"12 57\", got {v!r}")
            out.append((int(parts[0]), int(parts[1])))
        return out

    report = edit_cells(wd, merges=pairs(merge), splits=pairs(split), table=table)
    console.print(f"[green]edited[/] {report}")


@export_app.command("skeletons")
def export_skeletons(
    wd: WorkDir = Path("."),
    format: Annotated[str, typer.Option(help="swc")] = "swc",
    out: Annotated[Path | None, typer.Option(help="folder (default <wd>/export/swc)")] = None,
    ids: Annotated[list[int] | None, typer.Option(help="cell ids (default: all)")] = None,
) -> None:
    """Write skeletons as SWC files (nm, unit in the header)."""
    from syngraph.errors import InputError
    from syngraph.export.swc import export_swc

    if format != "swc":
        raise InputError(f"--format {format!r} is not supported for skeletons; use swc "
                         f"(navis Parquet and Neuroglancer precomputed are written by the step)")
    paths = export_swc(wd, out or wd / "export" / "swc", ids)
    console.print(f"[green]wrote[/] {len(paths)} SWC files")


@export_app.command("synapses")
def export_synapses(
    wd: WorkDir = Path("."),
    format: Annotated[str, typer.Option(help="parquet, cave, neuprint or syconn")] = "parquet",
) -> None:
    """Write the synapse table (runs the matrix export; all formats land in <wd>/export/)."""
    from syngraph.errors import InputError
    from syngraph.export.matrix import run_matrix

    files = {"parquet": "tables/synapses.parquet", "cave": "export/cave_synapses.parquet",
             "neuprint": "export/neuprint", "syconn": "export/conn_mat.csv"}
    if format not in files:
        raise InputError(f"--format {format!r}: choose one of {', '.join(files)}")
    if run_matrix(wd).get("graph") == "contacts":
        console.print(f"[green]wrote[/] {wd / 'export' / 'cell_contacts.csv'} and "
                      f"{wd / 'tables' / 'connections.parquet'}: the cell contact graph (no sj layer, "
                      f"so no synapses; import one with `syngraph import sj SOURCE` for synapse formats)",
                      soft_wrap=True, highlight=False)
        return
    console.print(f"[green]wrote[/] {wd / files[format]}")


@app.command()
def report(wd_arg: WdPositional = None, wd: WorkDir = Path(".")) -> None:
    """Write report.html (clustered connectivity matrix, distributions, accuracy, steps' times and memory)."""
    from syngraph.report import write_report

    console.print(f"[green]wrote[/] {write_report(workdir_of(wd_arg, wd))}")


@app.command()
def view(
    wd: WorkDir = Path("."),
    port: Annotated[int, typer.Option(help="port of the data server (0: any free port)")] = 0,
    state_only: Annotated[bool, typer.Option(help="print the Neuroglancer JSON state and exit")] = False,
    data_url: Annotated[str | None, typer.Option(help="URL where <wd> is served (default: this command's server; "
                                                     "with --state-only: http://localhost:PORT, PORT 9015 if 0)")] = None,
    browser: Annotated[bool, typer.Option(help="open the viewer in a browser when one is available")] = True,
) -> None:
    """Show the working directory in Neuroglancer (served on localhost; the viewer works offline)."""
    import json
    import os
    import sys
    import time

    from syngraph.errors import InputError
    from syngraph.export.neuroglancer import viewer_state, write_neuroglancer
    from syngraph.io.volume import store_path

    try:
        import neuroglancer  # noqa: F401  (the viewer client and the annotation writer)
    except ImportError:
        raise InputError("syngraph view needs the neuroglancer package: pip install 'syngraph[view]'") from None
    if not (store_path(wd) / "sv" / "zarr.json").exists():
        raise InputError(f"{wd}: no sv layer in {store_path(wd)}; run `syngraph import sv SOURCE --wd {wd}` "
                         f"(or `syngraph demo {wd}`) first")
    write_neuroglancer(wd)
    if state_only:
        print(json.dumps(viewer_state(wd, data_url or f"http://localhost:{port or 9015}"), indent=1))
        return
    import webbrowser

    from syngraph.export.viewer import open_viewer, serve_directory

    server = serve_directory(wd, port=port)
    base = data_url or f"http://127.0.0.1:{server.server_address[1]}"
    viewer = open_viewer(viewer_state(wd, base))
    url = viewer.get_viewer_url()
    console.print(f"data: {base}\nviewer: [link={url}]{url}[/link]\n(Ctrl-C to stop)")
    if browser and (sys.platform == "darwin" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
