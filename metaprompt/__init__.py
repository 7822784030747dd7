"""metaprompt: multitask prompt distillation and decomposition for clinical NLP.

The package reads top to bottom along the data's way through it::

    tasks/        original files -> typed records -> (prompt text, target text) and back (readers/,
                  verbalizers/, canonical splits, user-declared task sets)
    data/         MultitaskDataModule: tokenise, sample tasks (p_i ∝ n_i^(1/T)), k-shot subsets, collate
                  rows with task ids, length bucketing or task-grouped batches
    backbones/    frozen HF causal LMs: embedded SmolLM2 (GGUF), presets, tiny test models, meta-device shapes
    prompts/      the trainable prompts: SoftPrompt [K, l, d], DecomposedPrompt P* ∘ (U_k V_kᵀ)
    forward/      the prompted backbone call: injection, shared prefix and its memo, fused loss,
                  checkpointing, greedy decoding (decode.py), candidate log-probs for ranked scoring
                  (candidates.py), and their switches (FastPaths)
    modules/      one LightningModule per stage on a shared base: teacher, distill (+ teacher_cache),
                  target, lora; fsdp2.py lays a stage out for FSDP2
    losses.py     CE + λ (τ²·KL + β·hidden MSE), the one place the MPT loss is written
    optim.py      OptimArgs (the modules' `optim` group: AdamW, warm-up, decay schedule); TaskAdamW:
                  a task's rows move only on steps whose batch had that task
    groups.py     ArgGroup: validated frozen argument groups (optim, evaluation) the CLI parses nested
    evaluation/   metrics, ranked log-likelihood scoring, bootstrap intervals, constant-answer floors,
                  the per-task table a stage reads once in setup (tasks.py), EvalArgs (args.py)
    adapters.py   portable adapter files (safetensors + JSON); PEFT export
    scale/        DDP / FSDP2 / DeepSpeed ZeRO strategies, gathered export (imports nothing above it)
    consolidation.py  any checkpoint (DDP file, ZeRO / FSDP2 folder) -> the portable adapter file
    callbacks.py  adapter export at the end of fit; step lines
    cli.py        LightningCLI (metaprompt fit|validate|test|predict)
    configs.py    the shipped configs (lightning_configs/), found by name from any directory
    compose.py    a run = its stage YAML + overrides, resolved and built by the CLI's own parser
    pipeline.py   teacher -> distill -> target -> test, + baselines: runs composed from the stage YAMLs,
                  resumable by records keyed on each run's resolved config
    sweep.py      learning rate per stage on validation loss
    ladder.py     the sanity ladder (issue 10); ladder_report.py writes its tables
    reproduce.py  the paper's comparison (presets in lightning_configs/reproduce/) on the ladder's runs;
                  reproduce_report.py its headline tables, plots.py its figures
"""

__version__ = "0.1.0"
