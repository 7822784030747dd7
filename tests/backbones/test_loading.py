import time

import pytest
import torch

from metaprompt.backbones import PRESETS, BackboneUnavailableError, load_backbone


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt-oss"])
def test_tiny_backbone_is_frozen_real_tokenizer_and_fast(name):
    model, tok = load_backbone(name)
    assert len(tok) == 49152 and tok.pad_token is not None
    assert not any(p.requires_grad for p in model.parameters())
    assert model.config.vocab_size >= len(tok)
    # A soft prompt is the only trainable tensor: the step is what prompt methods do.
    prompt = torch.zeros(4, 20, model.config.hidden_size, requires_grad=True)
    ids = torch.randint(0, len(tok), (4, 128))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: a second busy process cannot oversubscribe OpenMP's spinning threads
    times = []
    for _ in range(4):  # the first step pays one-off allocation/dispatch costs: excluded below
        t = time.perf_counter()
        embeds = torch.cat([prompt, model.get_input_embeddings()(ids)], dim=1)
        out = model(inputs_embeds=embeds, labels=torch.cat([torch.full((4, 20), -100), ids], dim=1))
        out.loss.backward()
        times.append(time.perf_counter() - t)
    assert torch.isfinite(out.loss) and prompt.grad.abs().sum() > 0
    torch.set_num_threads(threads)
    # best of the warm steps: a loaded 2-core machine adds noise, not cost (benchmarks live in bench/)
    assert min(times[1:]) < 1.0, f"tiny backbone step took {times}"


def test_tiny_backbones_are_seeded():
    a, _ = load_backbone("tiny-llama", seed=1)
    b, _ = load_backbone("tiny-llama", seed=1)
    c, _ = load_backbone("tiny-llama", seed=2)
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_offline_hub_id_gives_a_clear_error():
    with pytest.raises(BackboneUnavailableError, match=r"'nobody/not-a-model' is not a local folder .*HF_HUB_OFFLINE"):
        load_backbone("nobody/not-a-model")
    with pytest.raises(BackboneUnavailableError, match="neither a preset"):
        load_backbone("llama3")


def test_presets_name_real_ids_and_dtypes():
    assert PRESETS["llama-3.1-8b"].source == "meta-llama/Llama-3.1-8B-Instruct"
    assert PRESETS["gpt-oss-20b"].dtype == torch.bfloat16
    assert PRESETS["smollm2-135m"].dtype == torch.float32


@pytest.mark.slow
def test_embedded_smollm2_generates_offline():
    model, tok = load_backbone("smollm2-135m")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=10, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc.input_ids.shape[1] :])
