"""``metaprompt fit|validate|test|predict -c lightning_configs/<stage>.yaml`` (LightningCLI).

The model is any stage or baseline (``model.class_path``); the data is always ``MultitaskDataModule``.
The task list and backbone are declared once: ``data.task_names`` is linked into the model at
instantiation and ``model.init_args.backbone`` into the data module, so they can never disagree.

A killed ``metaprompt fit`` continues with ``--ckpt_path last``: unless the config names a ``ModelCheckpoint``
(or turns checkpointing off), a :class:`~metaprompt.callbacks.ResumeCheckpoint` writes
``<default_root_dir>/checkpoints/last.ckpt`` every 50 steps, and the resumed run ends with the adapter the
uninterrupted one would have (loader position, optimizer, schedule and RNG states are in the checkpoint).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from metaprompt.callbacks import ResumeCheckpoint, StepPrinter
from metaprompt.data import MultitaskDataModule
from metaprompt.modules import PromptModule
from metaprompt.progress import interactive
from metaprompt.scale import release_process_group


class MetapromptCLI(LightningCLI):
    """LightningCLI for the stages; its generic ``--optimizer``/``--lr_scheduler`` groups are off, as the
    stages optimize through their own ``optim`` argument (``metaprompt.optim.OptimArgs``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(*args, **kwargs)

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # Lightning's bar redraws with carriage returns: in a log or CI, step lines instead (metaprompt.progress)
        if not interactive() and config.get("enable_progress_bar") is not False:
            config["enable_progress_bar"] = False
            callbacks.append(StepPrinter(self.subcommand or "run"))
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        if config.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in [*configured, *callbacks]
        ):  # in place of Lightning's default, which a rerun cannot find (a new version folder per run)
            callbacks.append(ResumeCheckpoint())
        return super()._instantiate_trainer(config, callbacks)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.backbone", "data.backbone", apply_on="parse")
        parser.link_arguments("data.task_names", "model.init_args.task_names", apply_on="instantiate")


def cli_main(args: list[str] | None = None, run: bool = True) -> MetapromptCLI:
    cli = MetapromptCLI(
        PromptModule,
        MultitaskDataModule,
        subclass_mode_model=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
    )
    if run:  # a multi-process run (DDP/FSDP2 over gloo, DeepSpeed) would otherwise be able to abort at exit
        release_process_group()
    return cli
