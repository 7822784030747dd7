"""metaprompt: multitask prompt distillation and decomposition for clinical NLP.

The package reads top to bottom along the data's way through it::

    tasks/     original files -> typed records -> (prompt text, target text) and back
    data/      MultitaskDataModule: tokenise, sample tasks, collate rows with task ids
    backbones/ frozen HF causal LMs (embedded SmolLM2, presets, tiny test models)
"""

__version__ = "0.1.0"
