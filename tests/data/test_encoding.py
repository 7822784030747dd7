from metaprompt.data.encoding import PromptEncoder


def test_chat_format_and_end_token(tokenizer):
    enc = PromptEncoder(tokenizer, max_length=256).encode("Name the drug: aspirin.", "aspirin")
    text = tokenizer.decode(enc.prompt_ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert "Name the drug: aspirin." in text
    assert tokenizer.decode(enc.target_ids) == "aspirin<|im_end|>"
    assert enc.truncated == 0 and not enc.over_length


def test_long_prompt_is_cut_in_the_middle_and_target_kept(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=128, min_prompt_tokens=16)
    prompt = "INSTRUCTION " + " ".join(f"w{i}" for i in range(400)) + " QUESTION?"
    target = "the answer is forty two"
    enc = encoder.encode(prompt, target)
    assert enc.truncated > 0
    assert len(enc.prompt_ids) + len(enc.target_ids) <= 128
    text = tokenizer.decode(enc.prompt_ids)
    assert "INSTRUCTION" in text and "QUESTION?" in text  # both ends survive
    assert tokenizer.decode(enc.target_ids) == target + "<|im_end|>"


def test_target_longer_than_budget_is_never_truncated(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=80, min_prompt_tokens=16)
    target = " ".join(["word"] * 200)
    enc = encoder.encode("short prompt " * 50, target)
    assert tokenizer.decode(enc.target_ids) == target + "<|im_end|>"
    assert enc.over_length
    assert len(enc.prompt_ids) == len(encoder.prefix_ids) + 16 + len(encoder.suffix_ids)


def test_batch_equals_single(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=64, min_prompt_tokens=8)
    prompts, targets = ["a b c " * 30, "short"], ["x", "y z"]
    assert encoder.encode_batch(prompts, targets) == [encoder.encode(p, t) for p, t in zip(prompts, targets)]


def test_cut_chars_name_exactly_the_characters_the_encoder_drops(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=64, min_prompt_tokens=8)
    prompts = ["HEAD " + " ".join(f"w{i}" for i in range(100)) + " TAIL?", "short"]
    targets = ["an answer", "x"]
    (a, b), uncut = encoder.cut_chars(prompts, targets)
    enc = encoder.encode(prompts[0], targets[0])
    body = enc.prompt_ids[len(encoder.prefix_ids) : len(enc.prompt_ids) - len(encoder.suffix_ids)]
    assert uncut is None and 0 < a < b < len(prompts[0])
    assert tokenizer.decode(body) == prompts[0][:a] + prompts[0][b:]  # what is left is the text without [a, b)
    assert encoder.cut_chars([], []) == []
