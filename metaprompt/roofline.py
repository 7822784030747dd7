"""GPU-hour estimates for the GPU presets from the hardware's published peaks: a roofline, not a measurement.

No GPU bench has run for this project (``bench/gpu_smoke.sh`` measures tokens/s and memory where a GPU
exists), so ``metaprompt reproduce -c lightning_configs/reproduce/<gpu preset>.yaml --estimate --gpu h100``
prices each run with the same :class:`~metaprompt.costs.CostModel` (the same task profiles, steps and test
samples) but these unit costs:

* a training step of a frozen backbone with a trainable prompt (or LoRA): forward ``2 N`` FLOPs per token
  plus the backward through the activations ``2 N`` (no weight gradients), over the row and soft-prompt
  tokens, at an assumed model-FLOPs utilisation ``mfu`` of the GPU's dense bf16 peak; ``N`` is the
  parameters a token passes through (for a mixture of experts, the routed share of the experts);
* distillation: that step plus the online teachers' forward (``(4 + 2) / 4``);
* ranked scoring and prefill: ``2 N`` per prompt token at ``mfu``;
* decoding: one step reads every weight once (memory-bound) at ``bandwidth_efficiency`` of the HBM
  bandwidth, shared by the rows decoding together;
* under ZeRO-3 over ``devices`` GPUs each rank computes ``1/devices`` of the rows but gathers the other
  ranks' weight shards every forward (twice per training step), over NVLink: a step costs the larger of
  its compute and that traffic.

The assumed efficiencies are typical of well-tuned small-batch PEFT training and batched greedy decoding on
these parts; replace them with gpu_smoke's measurement once it has run on the target machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    """A GPU's published peaks: dense bf16 FLOP/s, HBM bytes/s, NVLink bytes/s per direction."""

    name: str
    bf16_flops: float
    hbm_bytes_s: float
    nvlink_bytes_s: float


GPUS = {
    "h100": GpuSpec("NVIDIA H100 SXM 80GB", 989e12, 3.35e12, 450e9),
    "h200": GpuSpec("NVIDIA H200 SXM 141GB", 989e12, 4.8e12, 450e9),
    "a100": GpuSpec("NVIDIA A100 SXM 80GB", 312e12, 2.04e12, 300e9),
}


def backbone_sizes(backbone: str) -> tuple[float, float]:
    """``(parameters a token passes through, bytes of the weights)`` of a preset, from its architecture
    config on the meta device (offline). Experts of a mixture count at ``experts_per_token / experts``."""
    from metaprompt.backbones.meta import build_on_meta

    model = build_on_meta(backbone)
    cfg = model.config
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    routed = getattr(cfg, "experts_per_token", None) or getattr(cfg, "num_experts_per_tok", None)
    total = active = 0.0
    for name, p in model.named_parameters():
        total += p.numel()
        share = routed / experts if experts and routed and ".experts." in name else 1.0
        active += p.numel() * share
    size = next(model.parameters()).element_size()
    return active, total * size


@dataclass(frozen=True)
class RooflineCosts:
    """Unit costs of one backbone on ``devices`` GPUs of one kind (see module docstring); the interface of
    :class:`~metaprompt.costs.UnitCosts` that :class:`~metaprompt.costs.CostModel` uses.

    Attributes:
        gpu: The GPU's peaks.
        active_params: N, parameters a token passes through.
        weight_bytes: Bytes of all weights (what a decode step reads, what ZeRO-3 gathers).
        devices: GPUs of the run (ZeRO-3 shards the weights and splits the rows over them).
        mfu: Assumed fraction of the bf16 peak reached by training, scoring and prefill.
        bandwidth_efficiency: Assumed fraction of HBM (and NVLink) bandwidth reached.
        fit_start_s, test_start_s: Assumed seconds to the first step / batch (loading the weights).
        backbone: The preset (reported beside the estimate).
    """

    gpu: GpuSpec
    active_params: float
    weight_bytes: float
    devices: int = 1
    mfu: float = 0.35
    bandwidth_efficiency: float = 0.6
    fit_start_s: float = 120.0
    test_start_s: float = 90.0
    backbone: str = ""
    distill_over_step: float = 1.5
    ranked_task: str = "rqe"

    @classmethod
    def for_backbone(cls, backbone: str, gpu: str = "h100", devices: int = 1, **assumptions) -> RooflineCosts:
        """The roofline of a backbone preset on ``devices`` GPUs named in :data:`GPUS`.

        Raises:
            ValueError: for a GPU name that is not in :data:`GPUS`.
        """
        if gpu not in GPUS:
            raise ValueError(f"--gpu {gpu!r}: choose from {', '.join(GPUS)}")
        active, weight_bytes = backbone_sizes(backbone)
        return cls(GPUS[gpu], active, weight_bytes, max(1, devices), backbone=backbone, **assumptions)

    def _compute_s(self, flops: float) -> float:
        return flops / (self.gpu.bf16_flops * self.mfu * self.devices)

    def _gather_s(self, passes: int) -> float:
        """ZeRO-3's weight all-gathers of one step: every rank receives the other ranks' shards."""
        if self.devices == 1:
            return 0.0
        shard_traffic = self.weight_bytes * (self.devices - 1) / self.devices
        return passes * shard_traffic / (self.gpu.nvlink_bytes_s * self.bandwidth_efficiency)

    def train_step_s(self, rows: int, row_tokens: float, mixed: bool, prompt_length: int) -> float:
        flops = 4 * self.active_params * rows * (row_tokens + prompt_length)
        return max(self._compute_s(flops), self._gather_s(2))

    def ranked_s(self, prompt_tokens: float, reference_tokens: float, prompt_length: int) -> float:
        return self._compute_s(2 * self.active_params * (prompt_tokens + prompt_length))

    def prefill_s(self, prompt_tokens: float, reference_tokens: float, prompt_length: int) -> float:
        return self.ranked_s(prompt_tokens, reference_tokens, prompt_length)

    def decode_token_s(self, rows: int) -> float:
        local = self.weight_bytes / self.devices / (self.gpu.hbm_bytes_s * self.bandwidth_efficiency)
        step = max(local, self._gather_s(1))  # each rank decodes its own rows; ZeRO-3 gathers every step
        return step / (max(1, rows) * self.devices)

    def describe(self) -> str:
        """One line naming the hardware, the backbone's sizes and the assumptions."""
        return (
            f"roofline estimate (no GPU measurement): {self.devices} x {self.gpu.name}, {self.backbone} with "
            f"{self.active_params / 1e9:.1f} B parameters per token and {self.weight_bytes / 2**30:.1f} GiB of "
            f"weights; assumed {self.mfu:.0%} of the bf16 peak, {self.bandwidth_efficiency:.0%} of memory/NVLink "
            f"bandwidth, {self.fit_start_s:.0f} s / {self.test_start_s:.0f} s to a run's first step / batch"
        )


def device_count(devices) -> int:
    """A Trainer ``devices`` setting as a count for the estimate (``auto``/-1: one node of 8 GPUs)."""
    if isinstance(devices, int):
        return 8 if devices == -1 else devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if text.isdigit():
        return int(text)
    return 8 if text in ("auto", "-1") else max(1, len([d for d in text.split(",") if d.strip()]))
