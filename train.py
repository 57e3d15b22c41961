"""Train one run (one seed): python train.py --seed 0   (python train.py --help)"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from submission.cli import config_options
from submission.config import make_config
from submission.recipes import RECIPE_NOTES
from submission.errors import KitError, user_errors
from submission.scoring.validators import describe_choice

app = typer.Typer(add_completion=False, rich_markup_mode="rich")


@app.command(help=f"""Train one run on Acevedo_20 + Matek_19 and adapt it to the unlabelled target images (the kit's
recipe: resnet18 trained on the sources, the target normalised by its own mean and std; AdaBN and the other
test-time treatments as --adapt, MDD, MCC, IM, BNM and more as --recipe or the Adaptation options).

Another backbone: --backbone resnet34|resnet50|timm:MODEL, with --weights FILE for a local file (a torchvision or
timm state dict, or a DinoBloom checkpoint); --freeze-backbone trains on cached features (a foundation model on a CPU).

Writes RUNS/seed{{N}}/: config.json (every setting), metrics.csv (one row per epoch), last.pt, best.pt
(the epoch chosen without target labels, see --select) and avg.pt (the mean weights of the last epochs).

Teaching with a lab's few labels (labels.csv from the lab report): --labels labels.csv --init RUN continues RUN
for 300 steps with the labelled cells as a third labelled source, into RUNS-taught/seed{{N}}; a third of the labels
is held out to check it (infer.py --labels). It teaches under --adapt NAME, else the treatment the lab's labels
chose (ensemble.py --labels recorded it beside RUN), else RUN's own.

Under torchrun (torchrun --nproc_per_node N train.py ...) one run trains on N processes; --batch-size stays
the global batch per domain.

Recipes (--recipe): {'; '.join(f'[bold]{k}[/]: {v}' for k, v in RECIPE_NOTES.items())}.
""")
@config_options(skip=("recipe",))
@user_errors
def main(
    settings: dict,
    recipe: Annotated[Optional[str], typer.Option(help=f"Named recipe: {', '.join(RECIPE_NOTES)} (default: kit); it "
                                                       "fills every setting not given.", show_default=False,
                                                  rich_help_panel="Data")] = None,
    demo: Annotated[bool, typer.Option("--demo", metavar="", help="Budget preset on top of the recipe: data demo/data, "
                                                      "64 px, 8 x 50 steps, no ImageNet weights.")] = False,
    config: Annotated[Optional[Path], typer.Option(help="Rerun a recorded run: its config.json (or run folder) fills "
                                                        "every setting not given.")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="Continue the run in RUNS/seed{N} from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace a run already in RUNS/seed{N}.")] = False,
):
    from submission.train.distributed import ranks_from_env, teardown
    from submission.train.loop import fit

    if settings.get("init") and not settings.get("adapt"):
        settings = {**settings, **chosen_treatment(Path(settings["init"]), settings.get("data_root"))}
    cfg = make_config(recipe, demo, config, **settings)
    if not resume:
        check_sources(Path(cfg.data_root))
        if cfg.labels:
            check_labels(cfg)
    try:
        best = fit(cfg, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        teardown()
    if ranks_from_env().main:
        snd = f"target SND {best['target_snd']:.4f}, " if cfg.select.startswith("snd") else ""  # only where it chose
        print(f"best.pt: {describe_choice(best)} by {cfg.select}; {snd}source-val F1 {best['source_val_f1']:.3f} "
              f"-> {cfg.run_dir / 'best.pt'}")
        if cfg.labels:
            print(f"taught with {cfg.labels}: check it on the held-out cells with `python infer.py --runs {cfg.runs} "
                  f"--split {cfg.target} --labels {cfg.labels}` (the cells that taught it never score it)")


def check_sources(root: Path) -> None:
    """Before any model, download or run folder: the sources must be there (a newcomer's first try)."""
    missing = [d for d in ("Acevedo_20", "Matek_19") if not (root / d).is_dir()]
    if missing:
        raise KitError(f"no {' or '.join(missing)} in {root}/: the kit expects the challenge layout (README, 'Data'); "
                       "bring a folder in with `python -m submission.data.importer`, or try the kit on synthetic data: "
                       "`python -m submission.demo --dest demo`, then `python train.py --demo`")


def chosen_treatment(init: Path, data_root) -> dict:
    """{"adapt": NAME} where the lab's labels chose a treatment for RUN's runs and this lab (ensemble.py --labels
    recorded it), else {} (RUN's own)."""
    from types import SimpleNamespace

    import json

    from submission.errors import note
    from submission.predict.choice import CHOICE, recorded_choice

    run = init.parent if init.suffix == ".pt" else init
    if not (run / "config.json").is_file():
        return {}  # make_config says what is missing
    saved = json.loads((run / "config.json").read_text())
    root = data_root or saved.get("data_root_resolved", saved.get("data_root", "data"))
    rec = recorded_choice(run.parent, SimpleNamespace(data_root=root))
    if rec is None:
        return {}
    note(f"teaching under --adapt {rec['treatment']}: chosen by {rec['labels']} of this lab's labels ({rec['why']}; "
         f"{run.parent / CHOICE}); --adapt NAME overrides it")
    return {"adapt": rec["treatment"]}


def check_labels(cfg) -> None:
    """A bad labels file stops before any model or run folder."""
    from submission.data.labels import read_lab_labels
    from submission.data.targets import Target

    target = Target.resolve(cfg.target, Path(cfg.data_root), cfg.splits_dir, cfg.target_dir, cfg.px_per_um)
    read_lab_labels(cfg.labels, target.name, target.images)


if __name__ == "__main__":
    app()
